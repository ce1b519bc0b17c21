"""`vdir batch PLAN` on the tiny model: a 3-clip plan runs to the end, reruns as a no-op,
resumes after kill -9 with the same tensors, and bad plans are refused before anything is made."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from _helpers_media import make_video
from _helpers_tiny import fast_model_loader
from safetensors.torch import load_file
from typer.testing import CliRunner

from videodirector_cli.cli.app import app
from videodirector_cli.project.store import Project

PLAN = """
[defaults.model]
model = "tiny"

[defaults.init]
frames = 2
size = "64"

[defaults.invert]
steps = 2
report = false
stdg = { enabled = false }

[defaults.invert.null_text]
inner_steps = 1

[[clip]]
name = "ball"
video = "ball.mp4"
prompt = "a red ball rolling"
mask = { box = [8, 8, 48, 48], sam2 = false }
invert = { stdg = { enabled = true } }

[[clip.edits]]
name = "blue"
prompt = "a blue ball rolling"

[[clip]]
name = "cube"
video = "cube.mp4"
prompt = "a red cube rolling"
invert = { steps = 3 }

[[clip.edits]]
name = "green"
prompt = "a green cube rolling"
settings = { tau_s = 0.5 }

[[clip]]
name = "disk"
video = "disk.mp4"
prompt = "a red disk rolling"
mask = { box = [16, 16, 56, 56], sam2 = false, shape = "ellipse" }

[[clip.edits]]
name = "blue"
prompt = "a blue disk rolling"

[[clip.edits]]
name = "big"
prompt = "a big red disk rolling"
"""
CLIPS = ("ball", "cube", "disk")


def write_plan(folder: Path, text: str = PLAN) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in CLIPS:
        if not (folder / f"{name}.mp4").exists():
            make_video(folder / f"{name}.mp4", frames=6, width=80, height=80, noise=True)
    plan = folder / "plan.toml"
    plan.write_text(text, encoding="utf-8")
    return plan


@pytest.fixture
def _fast_models(monkeypatch):
    monkeypatch.setattr("videodirector_cli.diffusion.loading.load_model", fast_model_loader)


def _batch(*args: str):
    return CliRunner().invoke(app, ["batch", *args])


def tensors(out: Path) -> dict[str, torch.Tensor]:
    """Every tensor the plan's inversions and edits stored, by clip and file."""
    found = {}
    for clip in CLIPS:
        root = out / clip
        for path in sorted((root / "inversions").rglob("*.safetensors")):
            for name, tensor in load_file(str(path)).items():
                found[f"{path.relative_to(out)}:{name}"] = tensor
        for path in sorted((root / "edits").rglob("latents.safetensors")):
            found[str(path.relative_to(out))] = load_file(str(path))["latents"]
    return found


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """The plan run once to the end, in this process."""
    folder = tmp_path_factory.mktemp("batch")
    plan = write_plan(folder)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("videodirector_cli.diffusion.loading.load_model", fast_model_loader)
        result = _batch(str(plan), "--json")
    assert result.exit_code == 0, result.output
    return plan, folder / "plan", json.loads(result.stdout)


def test_a_three_clip_plan_runs_to_the_end(finished):
    _, out, summary = finished
    assert [c["name"] for c in summary["clips"]] == list(CLIPS)
    for clip in summary["clips"]:
        assert clip["state"] == "done" and clip["error"] is None
        assert (out / clip["report"]).is_file()
        assert clip["ran"]["invert"] == "made"
    edits = {c["name"]: c["edits"] for c in summary["clips"]}
    assert edits == {
        "ball": {"blue": "done"},
        "cube": {"green": "done"},
        "disk": {"big": "done", "blue": "done"},
    }
    assert Project.open(out / "ball").manifest.masks.status == "done"
    assert Project.open(out / "cube").manifest.masks is None  # no mask table: no mask
    cube = Project.open(out / "cube").manifest
    assert cube.inversions[cube.current_inversion].params.settings.steps == 3  # clip over default
    ball = Project.open(out / "ball").manifest
    assert ball.inversions[ball.current_inversion].params.settings.stdg.enabled  # merged deep
    assert cube.edits["green"].params.settings.tau_s == 0.5
    index = (out / "index.html").read_text(encoding="utf-8")
    for clip in CLIPS:
        assert f'href="{clip}/report/index.html"' in index
    assert json.loads((out / "batch.json").read_text())["clips"] == summary["clips"]


def test_a_finished_plan_reruns_as_a_no_op(finished, _fast_models):
    plan, out, _ = finished
    before = tensors(out)
    started = time.perf_counter()
    again = _batch(str(plan), "--json")
    seconds = time.perf_counter() - started
    assert again.exit_code == 0, again.output
    for clip in json.loads(again.stdout)["clips"]:
        assert clip["ran"]["init"] == "reused" and clip["ran"]["invert"] == "reused"
        assert set(clip["ran"]["edits"].values()) == {"reused"}
        assert clip["ran"]["mask"] in ("reused", "none")
    after = tensors(out)
    assert after.keys() == before.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert seconds < 60


def _inverting(out: Path, clip: str) -> bool:
    manifest = out / clip / "manifest.json"
    try:
        data = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return False
    return any(
        r["status"] == "running" and (r.get("progress") or {}).get("done", 0) >= 1
        for r in data.get("inversions", {}).values()
    )


@pytest.mark.slow
def test_kill_9_then_rerun_gives_the_tensors_of_an_uninterrupted_run(finished, tmp_path):
    plan, reference, _ = finished
    out = tmp_path / "killed"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "videodirector_cli", "batch", str(plan), "--out", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline:
        if _inverting(out, "cube"):  # the second clip's inversion is under way
            break
        time.sleep(0.05)
    assert process.poll() is None, process.stderr.read() if process.stderr else ""
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    resumed = subprocess.run([*command, "--json"], capture_output=True, text=True, env=env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    rows = {c["name"]: c for c in json.loads(resumed.stdout)["clips"]}
    assert rows["ball"]["ran"]["invert"] == "reused"  # finished before the kill
    assert rows["disk"]["ran"]["invert"] == "made"  # never started before the kill
    want, got = tensors(reference), tensors(out)
    assert got.keys() == want.keys()
    assert [k for k in want if not torch.equal(want[k], got[k])] == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('[[clip]]\nname = "ball"', '[[clip]]\nname = "ball"\ncolour = 3'), "clip[0].colour"),
        (('name = "cube"', 'name = "ball"'), "clip names given twice: ball"),
        (('video = "disk.mp4"', 'video = "nowhere.mp4"'), "nowhere.mp4 does not exist"),
        (('name = "big"', 'name = "../big"'), "cannot be a folder name"),
        (("steps = 2", "steps = 0"), "clip[0].invert"),
        (("frames = 2", "frames = 2 2"), "line 6"),
    ],
)
def test_bad_plans_are_refused_naming_the_key_or_line_and_nothing_is_made(
    tmp_path, change, message
):
    plan = write_plan(tmp_path, PLAN.replace(*change, 1))
    result = _batch(str(plan))
    assert result.exit_code == 3, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) <= 2
    assert not (tmp_path / "plan").exists()


def test_a_missing_device_is_refused_before_anything_is_made(tmp_path):
    plan = write_plan(tmp_path)
    result = _batch(str(plan), "--devices", "cuda:0,cuda:1")
    assert result.exit_code == 2 and "cuda:0" in result.stderr
    assert not (tmp_path / "plan").exists()


@pytest.mark.slow
def test_two_workers_give_the_same_tensors_as_one(finished, tmp_path):
    plan, reference, _ = finished
    out = tmp_path / "workers"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "videodirector_cli", "batch", str(plan), "--out", str(out),
               "--devices", "cpu,cpu", "--json"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert {c["state"] for c in json.loads(done.stdout)["clips"]} == {"done"}
    want, got = tensors(reference), tensors(out)
    assert got.keys() == want.keys()
    assert [k for k in want if not torch.equal(want[k], got[k])] == []


def test_ray_without_ray_installed_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as if not installed
    plan = write_plan(tmp_path)
    result = _batch(str(plan), "--ray", "auto")
    assert result.exit_code == 2
    assert "pip install 'videodirector-cli[ray]'" in result.stderr
    assert not (tmp_path / "plan").exists()


def test_ray_and_devices_exclude_each_other(tmp_path):
    plan = write_plan(tmp_path)
    result = _batch(str(plan), "--ray", "auto", "--devices", "cpu")
    assert result.exit_code == 2 and "exclude each other" in result.stderr


def test_an_unknown_step_is_refused(tmp_path):
    plan = write_plan(tmp_path)
    result = _batch(str(plan), "--only", "ball", "--step", "edit:nothing")
    assert result.exit_code == 2 and "no such step" in result.stderr


@pytest.mark.ray
def test_the_plan_on_a_local_ray_instance_gives_the_same_tensors(finished, tmp_path, _fast_models):
    plan, _, _ = finished
    # Ray gives each 1-CPU task OMP_NUM_THREADS=1, and float sums depend on the thread count:
    # the reference runs on one thread too
    reference = tmp_path / "one-thread"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert _batch(str(plan), "--out", str(reference)).exit_code == 0
    finally:
        torch.set_num_threads(threads)
    out = tmp_path / "ray"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "videodirector_cli", "batch", str(plan), "--out", str(out),
               "--ray", "local", "--json"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    assert {c["state"] for c in json.loads(done.stdout)["clips"]} == {"done"}
    want, got = tensors(reference), tensors(out)
    assert got.keys() == want.keys()
    assert [k for k in want if not torch.equal(want[k], got[k])] == []


@pytest.mark.ray
def test_an_unreachable_ray_address_is_refused(tmp_path):
    plan = write_plan(tmp_path)
    result = _batch(str(plan), "--ray", "127.0.0.1:9")
    assert result.exit_code == 2 and "cannot join a Ray cluster" in result.stderr
    assert not (tmp_path / "plan").exists()
