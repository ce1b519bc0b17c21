"""Shared test setup: offline by construction, quiet libraries, and the session's shared objects.

Session fixtures are built once and shared by every test that reads them; a test that writes
to a shared project works on ``_helpers_project.copy_project(finished_project, tmp_path)``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
def finished_project(tmp_path_factory) -> Path:
    """A project every stage has run on, through the command line with the tiny model: init (a
    synthetic 4-frame 64x64 video), mask --box --no-sam2, invert (2 steps), edit 'blue' and
    render blue --compare. Read it only; copy it (``copy_project``) to change it."""
    from _helpers_media import make_video
    from _helpers_project import FINISHED_EDIT, FINISHED_INVERT, FINISHED_PROMPT
    from _helpers_tiny import fast_model_loader
    from typer.testing import CliRunner

    from videodirector_cli.cli.app import app

    work = tmp_path_factory.mktemp("finished")
    video = make_video(work / "clip.mp4", frames=6, width=64, height=64)
    root = work / "project"
    init = ["init", str(video), str(root), "--frames", "4", "--size", "64"]
    commands = [
        [*init, "--prompt", FINISHED_PROMPT],
        ["mask", "--box", "16,16,48,48", "--no-sam2", "-p", str(root)],
        [*FINISHED_INVERT, "-p", str(root)],
        [*FINISHED_EDIT, "-p", str(root)],
        ["render", "blue", "--compare", "-p", str(root)],
    ]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("videodirector_cli.diffusion.models.load_model", fast_model_loader)
        for command in commands:
            result = CliRunner().invoke(app, [*command, "--quiet"])
            assert result.exit_code == 0, (command, result.output)
    return root
