"""`vdir invert` as a user meets it: files, manifest, resume, keys, and every bad input."""

from __future__ import annotations

import json

import pytest
import torch
from _helpers_invert import fast_model_loader, make_invert_project, tiny_model
from typer.testing import CliRunner

from videodirector_cli.cli.app import app
from videodirector_cli.output import Output
from videodirector_cli.project.store import Project
from videodirector_cli.settings.invert import InvertRequest, InvertSettings, NullTextSettings
from videodirector_cli.settings.model import ModelChoice
from videodirector_cli.stages.inversion_files import InversionFiles
from videodirector_cli.stages.invert import run_invert

FAST = ["--model", "tiny", "--steps", "2", "--inner-steps", "1"]


@pytest.fixture(autouse=True)
def _fast_models(monkeypatch):
    monkeypatch.setattr("videodirector_cli.diffusion.loading.load_model", fast_model_loader)


def _invoke(root, *args):
    return CliRunner().invoke(app, ["invert", "--project", str(root), *args])


def _request(steps: int = 3, inner_steps: int = 2, prompt: str | None = None) -> InvertRequest:
    settings = InvertSettings(
        steps=steps, null_text=NullTextSettings(inner_steps=inner_steps), report=False
    )
    return InvertRequest(prompt=prompt, settings=settings, model=ModelChoice(model="tiny"))


def _run(root, request: InvertRequest, **kwargs):
    return run_invert(Project.open(root), request, Output(mode="quiet"), **kwargs)


def test_invert_writes_each_step_reports_and_then_is_up_to_date(tmp_path):
    root = tmp_path / "p"
    make_invert_project(root, masks=True)
    result = _invoke(root, *FAST, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    key = data["inversion"]
    assert len(data["losses"]) == 2 and data["iterations"] == [1, 1]
    report = data["report"]
    assert report["optimised"]["latent_mse"] >= 0 and report["plain_ddim"]["psnr"] > 0
    assert data["passes"]["by_purpose"]["report"] == 4  # 2 steps x (null + prompt)
    project = Project.open(root)
    record = project.manifest.inversions[key]
    assert record.status == "done" and project.manifest.current_inversion == key
    assert record.metrics["report"] == report and record.progress.done == 2
    files = InversionFiles(project.paths.inversion_dir(key))
    stored = files.load()
    assert stored.guidance[1] is not None and stored.nulls[0].shape[0] == 4  # per-frame
    assert record.outputs["inversion"] == files.content_hash(2)
    before = {p: p.stat().st_mtime_ns for p in files.folder.rglob("*")}
    again = _invoke(root, *FAST, "--json")
    assert again.exit_code == 0 and json.loads(again.stdout)["up_to_date"] is True
    assert {p: p.stat().st_mtime_ns for p in files.folder.rglob("*")} == before
    status = CliRunner().invoke(app, ["status", "--project", str(root), "--json"])
    assert "plain_ddim" in status.stdout


def test_resumed_inversion_equals_an_uninterrupted_one_bit_for_bit(tmp_path):
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    for root in (whole, broken):
        make_invert_project(root, masks=True)
    done = _run(whole, _request(), model=tiny_model())

    def interrupt(result):
        if result.step == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(broken, _request(), model=tiny_model(), on_step=interrupt)
    project = Project.open(broken)
    assert project.manifest.inversions[done.key].status == "interrupted"
    files = InversionFiles(project.paths.inversion_dir(done.key))
    assert files.completed_steps(done.key) == 2
    resumed = _run(broken, _request(), model=tiny_model())
    assert resumed.key == done.key and resumed.data["resumed_from"] == 2
    a = InversionFiles(Project.open(whole).paths.inversion_dir(done.key)).load()
    b = files.load()
    assert torch.equal(a.pivots, b.pivots)
    for name in ("nulls", "latents", "next_latents", "guidance"):
        for x, y in zip(getattr(a, name), getattr(b, name), strict=True):
            assert torch.equal(x, y), name
    assert resumed.data["losses"] == done.data["losses"]


def test_a_changed_prompt_makes_a_new_inversion_and_keeps_the_old(tmp_path):
    root = tmp_path / "p"
    make_invert_project(root)
    first = _run(root, _request(steps=1, inner_steps=0), model=tiny_model())
    second = _run(root, _request(steps=1, inner_steps=0, prompt="a blue ball"), model=tiny_model())
    assert first.key != second.key
    project = Project.open(root)
    assert set(project.manifest.inversions) == {first.key, second.key}
    assert (
        project.manifest.current_inversion == second.key
        and project.manifest.prompt == "a blue ball"
    )
    assert InversionFiles(project.paths.inversion_dir(first.key)).completed_steps() == 1


# ----------------------------------------------------------------------------- bad input


def test_invert_before_init(tmp_path):
    result = _invoke(tmp_path, *FAST)
    assert result.exit_code == 6 and "not a vdir project" in result.stderr


def test_invert_without_frames(tmp_path):
    project = Project.create(tmp_path / "p")
    with project.writing("test"):
        project.save()
    result = _invoke(tmp_path / "p", *FAST)
    assert result.exit_code == 4 and "no frames" in result.stderr


def test_no_source_prompt_anywhere(tmp_path):
    make_invert_project(tmp_path / "p", prompt=None)
    result = _invoke(tmp_path / "p", *FAST)
    assert result.exit_code == 4 and "no source prompt" in result.stderr
    assert "--prompt" in result.stderr


def test_a_prompt_longer_than_the_text_encoder_is_refused_not_truncated(tmp_path):
    root = tmp_path / "p"
    make_invert_project(root)
    before = (root / "manifest.json").read_text()
    result = _invoke(root, *FAST, "--prompt", "word " * 80)
    assert result.exit_code == 2 and "tokens" in result.stderr and "77" in result.stderr
    assert (root / "manifest.json").read_text() == before
    assert not (root / "inversions").exists()


def test_masks_whose_count_differs_from_the_frames(tmp_path):
    make_invert_project(tmp_path / "p", masks=True, mask_count=3)
    result = _invoke(tmp_path / "p", *FAST)
    assert result.exit_code == 5 and "3 masks for 4 frames" in result.stderr


def test_a_model_folder_that_is_not_an_animatediff_model(tmp_path):
    make_invert_project(tmp_path / "p")
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("not weights")
    result = _invoke(tmp_path / "p", "--model", str(junk), "--steps", "2")
    assert result.exit_code == 8, result.stderr
    assert not (tmp_path / "p" / "inversions").exists()


def test_out_of_memory_says_what_to_lower(tmp_path, monkeypatch):
    root = tmp_path / "p"
    make_invert_project(root)

    def no_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr("videodirector_cli.diffusion.null_text.optimise_nulls", no_memory)
    result = _invoke(root, *FAST)
    assert result.exit_code == 9
    assert "out of GPU memory" in result.stderr and "--memory low" in result.stderr
    (record,) = Project.open(root).manifest.inversions.values()
    assert record.status == "failed"
    # after the leanest plan the advice turns to the clip and the guidance
    result = _invoke(root, *FAST, "--memory", "lowest")
    assert result.exit_code == 9 and "--memory" not in result.stderr.split("out of GPU memory")[1]
    assert "fewer frames" in result.stderr


def test_a_nan_stops_keeps_the_good_steps_and_says_so(tmp_path):
    root = tmp_path / "p"
    make_invert_project(root)
    model = tiny_model()
    calls = []

    def poison(module, args, output):
        calls.append(1)
        if len(calls) > 6:  # 2 inversion forwards, then step 0 (cond + 2 uncond), then NaN
            output.sample.fill_(float("nan"))
        return output

    handle = model.unet.register_forward_hook(poison)
    try:
        result = _invoke(root, *FAST, "--no-stdg")
    finally:
        handle.remove()
    assert result.exit_code == 10, result.stderr
    assert "NaN" in result.stderr and "step 1" in result.stderr and "saved" in result.stderr
    project = Project.open(root)
    (key,) = project.manifest.inversions
    assert project.manifest.inversions[key].status == "failed"
    assert InversionFiles(project.paths.inversion_dir(key)).completed_steps(key) == 1


def test_bad_options_are_usage_errors(tmp_path):
    make_invert_project(tmp_path / "p")
    assert _invoke(tmp_path / "p", *FAST, "--null", "many").exit_code == 2
    assert _invoke(tmp_path / "p", *FAST, "--stdg-blocks", "up_blocks.9").exit_code == 2
    assert _invoke(tmp_path / "p", *FAST, "--block-weights", "1,2,3").exit_code == 2


@pytest.mark.slow
def test_kill_9_mid_inversion_then_the_same_command_finishes_it_identically(tmp_path):
    """A real `vdir invert` process killed with SIGKILL after its second step file appears;
    rerunning continues there and every stored tensor equals an uninterrupted run's."""
    import os
    import signal
    import subprocess
    import sys
    import time

    whole, killed = tmp_path / "whole", tmp_path / "killed"
    for root in (whole, killed):
        make_invert_project(root, masks=True)
    args = ["--model", "tiny", "--steps", "4", "--inner-steps", "2", "--no-report", "--quiet"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}

    def vdir(root):
        command = [sys.executable, "-m", "videodirector_cli", "invert", "--project", str(root)]
        return subprocess.Popen([*command, *args], env=env)

    assert vdir(whole).wait(timeout=900) == 0
    (key,) = Project.open(whole).manifest.inversions
    process = vdir(killed)
    steps_dir = Project.open(killed).paths.inversion_dir(key) / "steps"
    deadline = time.monotonic() + 900
    while not (steps_dir / "step_0001.safetensors").exists():
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    files = InversionFiles(steps_dir.parent)
    assert 2 <= files.completed_steps(key) < 4
    assert vdir(killed).wait(timeout=900) == 0
    a, b = InversionFiles(Project.open(whole).paths.inversion_dir(key)).load(), files.load()
    assert torch.equal(a.pivots, b.pivots)
    for name in ("nulls", "latents", "next_latents", "guidance"):
        for x, y in zip(getattr(a, name), getattr(b, name), strict=True):
            assert torch.equal(x, y), name
    assert Project.open(killed).manifest.inversions[key].status == "done"
