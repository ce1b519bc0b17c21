"""Shared test setup: offline by construction, quiet libraries, and the session's shared objects.

Session fixtures are built once and shared by every test that reads them; a test that writes
to a shared project works on ``_helpers_project.copy_project(edited_project.root, tmp_path)``.
"""

from __future__ import annotations

import json
import os

import pytest
from _helpers_project import EditedProject

# Nothing in the test suite may reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")


@pytest.fixture(scope="session")
def tiny_model():
    """diffusion/tiny.py's random ``tiny`` model, built once (what ``--model tiny`` loads)."""
    from _helpers_tiny import tiny_model as cached

    return cached()


@pytest.fixture(scope="session")
def edited_project(tmp_path_factory) -> EditedProject:
    """A project with frames, masks, a finished inversion (``make_project_with_inversion``: a
    made-up trajectory on the real format) and one edit made through the command line
    (``EDITED_EDIT``: 'white-tiger', with --reweight). Read it only; copy it to change it."""
    from _helpers_editing import make_project_with_inversion
    from _helpers_project import EDITED_EDIT
    from _helpers_tiny import fast_model_loader
    from typer.testing import CliRunner

    from videodirector_cli.cli.app import app

    root = tmp_path_factory.mktemp("edited")
    _, stored = make_project_with_inversion(root, masks=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("videodirector_cli.diffusion.loading.load_model", fast_model_loader)
        result = CliRunner().invoke(app, [*EDITED_EDIT, "--project", str(root), "--json"])
    assert result.exit_code == 0, result.output
    return EditedProject(root, stored, json.loads(result.stdout))
