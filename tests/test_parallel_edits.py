"""Several `vdir edit` processes on one project: edits of different names run at the same time
(the project lock is held only to update the manifest), one name is never made twice at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from _helpers_project import copy_project
from _helpers_tiny import fast_model_loader
from safetensors.torch import load_file
from typer.testing import CliRunner

from videodirector_cli.cli.app import app
from videodirector_cli.project.readers import EDIT_LATENTS
from videodirector_cli.project.store import Project

EDITS = [
    ("red", "a red tiger walking on rocks"),
    ("white", "a white tiger walking on rocks"),
    ("small", "a small bear walking on rocks"),
    ("snow", "a brown bear walking on snow"),
]


def _edit_command(root, name, prompt):
    return [sys.executable, "-m", "videodirector_cli", "edit", prompt, "--name", name,
            "--project", str(root), "--json"]  # fmt: skip


@pytest.fixture
def _fast_models(monkeypatch):
    monkeypatch.setattr("videodirector_cli.diffusion.loading.load_model", fast_model_loader)


def _vdir(root, *args):
    return CliRunner().invoke(app, [args[0], "--project", str(root), *args[1:]])


def _latents(root, name):
    return load_file(str(root / "edits" / name / EDIT_LATENTS))["latents"]


def test_four_edits_at_once_all_succeed_and_equal_the_same_edits_one_at_a_time(
    edited_project, tmp_path, _fast_models
):
    together = copy_project(edited_project.root, tmp_path / "together")
    alone = copy_project(edited_project.root, tmp_path / "alone")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    processes = [
        subprocess.Popen(
            _edit_command(together, name, prompt),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for name, prompt in EDITS
    ]
    answers = [process.communicate(timeout=600) for process in processes]
    for process, (stdout, stderr) in zip(processes, answers, strict=True):
        assert process.returncode == 0, stderr[-2000:]
        assert json.loads(stdout)["up_to_date"] is False
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the processes ran
    try:
        for name, prompt in EDITS:  # the same edits one at a time, in this process
            done = _vdir(alone, "edit", prompt, "--name", name)
            assert done.exit_code == 0, done.output
    finally:
        torch.set_num_threads(threads)
    recorded = Project.open(together).manifest.edits
    for name, prompt in EDITS:
        record = recorded[name]
        assert record.status == "done" and record.params.prompt == prompt
        assert record.outputs["edit"] and record.outputs["latents"]
        assert torch.equal(_latents(together, name), _latents(alone, name))
    # the edit that was there before is untouched by the four writers
    assert set(recorded) == {*(n for n, _ in EDITS), *Project.open(alone).manifest.edits}
    status = CliRunner().invoke(app, ["status", "--project", str(together), "--json"])
    states = {r["key"]: r["state"] for r in json.loads(status.stdout)["stages"]}
    assert all(states[name] == "done" for name, _ in EDITS)


def test_a_name_being_made_elsewhere_is_refused_and_other_names_proceed(
    edited_project, tmp_path, _fast_models
):
    root = copy_project(edited_project.root, tmp_path)
    before = (root / "manifest.json").read_bytes()
    lock = Project.open(root).record_lock("edits", "busy", "edit")
    lock.acquire()  # another process is making edit 'busy'
    try:
        refused = _vdir(root, "edit", "a red tiger walking on rocks", "--name", "busy")
        assert refused.exit_code == 7
        assert "edit 'busy'" in refused.stderr and "is writing" in refused.stderr
        assert (root / "manifest.json").read_bytes() == before
        assert not (root / "edits" / "busy").exists()
        status = _vdir(root, "status", "--json")
        assert status.exit_code == 0
        other = _vdir(root, "edit", "a red tiger walking on rocks", "--name", "other", "--json")
        assert other.exit_code == 0, other.output
    finally:
        lock.release()
    assert Project.open(root).manifest.edits["other"].status == "done"


def test_a_derived_name_being_made_elsewhere_moves_to_the_next_suffix(
    edited_project, tmp_path, _fast_models
):
    root = copy_project(edited_project.root, tmp_path)
    lock = Project.open(root).record_lock("edits", "snow", "edit")
    lock.acquire()
    try:
        result = _vdir(root, "edit", "a brown bear walking on snow", "--json")
    finally:
        lock.release()
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["name"] == "snow-2"


def test_a_running_edit_reads_running_while_its_lock_is_held(edited_project, tmp_path):
    from _helpers_project import EDITED_NAME

    root = copy_project(edited_project.root, tmp_path)
    project = Project.open(root)
    with project.writing("test"):
        project.manifest.edits[EDITED_NAME].status = "running"
        project.save()
    lock = project.record_lock("edits", EDITED_NAME, "edit")
    lock.acquire()
    try:
        held = json.loads(_vdir(root, "status", "--json").stdout)
    finally:
        lock.release()
    free = json.loads(_vdir(root, "status", "--json").stdout)
    state = {r["key"]: r["state"] for r in held["stages"]}[EDITED_NAME]
    assert state == "running"
    assert {r["key"]: r["state"] for r in free["stages"]}[EDITED_NAME] == "interrupted"
