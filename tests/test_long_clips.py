"""A 40-frame clip on the tiny model (positional encodings for 32 frames) through every command:
invert (checkpoints, resume), edit with every control, render, eval's seam score, status (slow:
whole 40-frame runs); and the window options that are refused before anything is written."""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from _helpers_invert import PROMPT, fast_model_loader, tiny_model
from typer.testing import CliRunner

from videodirector_cli.cli.app import app
from videodirector_cli.output import Output
from videodirector_cli.project.store import Project
from videodirector_cli.settings.invert import InvertRequest, InvertSettings, NullTextSettings
from videodirector_cli.settings.model import ModelChoice
from videodirector_cli.stages.inversion_files import InversionFiles
from videodirector_cli.stages.invert import run_invert

FRAMES, SIZE = 40, 16
FAST = ["--model", "tiny", "--steps", "2", "--inner-steps", "1"]
EDIT_PROMPT = "a blue ball rolling"


@pytest.fixture(autouse=True)
def _fast_models(monkeypatch):
    monkeypatch.setattr("videodirector_cli.diffusion.loading.load_model", fast_model_loader)


def long_frames(count: int = FRAMES, size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """A disk going back and forth on a gradient (period 24 frames), and its masks."""
    y, x = np.mgrid[0:size, 0:size]
    frames = np.zeros((count, size, size, 3), dtype=np.uint8)
    masks = np.zeros((count, size, size), dtype=bool)
    for index in range(count):
        phase = index % 24
        cx = 3 + (phase if phase < 12 else 24 - phase) * (size - 6) / 12
        frames[index, ..., 0] = (x * 255 // size).astype(np.uint8)
        frames[index, ..., 2] = (y * 255 // size).astype(np.uint8)
        frames[index][(x - cx) ** 2 + (y - size / 2) ** 2 <= (size / 5) ** 2] = (240, 220, 30)
        masks[index] = (x - cx) ** 2 + (y - size / 2) ** 2 <= (size / 4) ** 2
    return frames, masks


def make_long_project(root: Path) -> Project:
    from _helpers_project import frames_record, masks_record

    from videodirector_cli.media.frames import write_mask, write_png
    from videodirector_cli.project.fingerprint import hash_files
    from videodirector_cli.project.manifest import SourceInfo

    frames, masks = long_frames()
    project = Project.create(root)
    with project.writing("test"):
        project.manifest.prompt = PROMPT
        project.manifest.source = SourceInfo(
            path="synthetic.mp4", sha256="0" * 64, fps=8.0, width=SIZE, height=SIZE,
            frame_count=FRAMES, output_fps=8.0, size=(SIZE, SIZE), fit="crop",
        )  # fmt: skip
        files = project.paths.frame_files(len(frames))
        for path, image in zip(files, frames, strict=True):
            write_png(path, image)
        frames_hash = hash_files(files)
        project.manifest.frames = frames_record(len(frames), frames_hash, SIZE)
        mask_files = project.paths.mask_files(len(masks))
        for path, mask in zip(mask_files, masks, strict=True):
            write_mask(path, mask)
        project.manifest.masks = masks_record(frames_hash, hash_files(mask_files))
        project.save()
    return Project.open(root)


def _vdir(root: Path, *args: str):
    return CliRunner().invoke(app, [*args, "--project", str(root)], env={"COLUMNS": "400"})


@functools.lru_cache(maxsize=1)
def _inverted(root_text: str) -> dict:
    root = Path(root_text)
    make_long_project(root)
    result = _vdir(root, "invert", *FAST, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def inverted(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("long") / "p"
    return root, _inverted(str(root))


@pytest.mark.slow
def test_a_40_frame_clip_inverts_through_four_windows(inverted):
    root, data = inverted
    assert data["windows"]["windows"] == 4 and data["windows"]["starts"] == [0, 8, 16, 24]
    assert len(data["losses"]) == 2 and all(np.isfinite(data["losses"]))
    report = data["report"]
    assert report["optimised"]["psnr"] > 0 and set(report["seam_score"]) == {
        "reconstruction",
        "source",
    }
    project = Project.open(root)
    record = project.manifest.inversions[data["inversion"]]
    assert record.status == "done" and record.metrics["windows"]["window"] == 16
    stored = InversionFiles(project.paths.inversion_dir(data["inversion"])).load()
    assert stored.pivots.shape[3] == FRAMES and stored.nulls[0].shape[0] == FRAMES
    assert all(g is not None and g.shape[2] == FRAMES for g in stored.guidance[1:])
    # every UNet call held one window: 3 per conditional pass of each of the 2 steps
    assert data["passes"]["by_purpose"]["conditional"] == 2 * 4  # 2 steps x 4 windows
    status = _vdir(root, "status", "--json")
    assert status.exit_code == 0
    rows = json.loads(status.stdout)["stages"]
    assert any(r["metrics"].get("windows", {}).get("windows") == 4 for r in rows)
    human = _vdir(root, "status")
    assert "windows=4x16 (overlap 8)" in human.stdout


@pytest.mark.slow
def test_edit_render_and_eval_of_the_40_frame_clip(inverted, tmp_path):
    root = tmp_path / "p"
    shutil.copytree(inverted[0], root)
    edited = _vdir(root, "edit", EDIT_PROMPT, "--name", "blue", "--tau-s", "0.5", "--json")
    assert edited.exit_code == 0, edited.output
    data = json.loads(edited.stdout)
    applied = Project.open(root).manifest.edits["blue"].metrics["controls_applied"]
    assert applied["sa1"] > 0 and applied["sa2"] > 0 and applied["cross"] > 0, applied
    assert data["folder"] and len(list((root / "edits" / "blue" / "frames").glob("*.png"))) == 40
    rendered = _vdir(root, "render", "blue", "--json")
    assert rendered.exit_code == 0, rendered.output
    evaluated = _vdir(root, "eval", "--json")
    assert evaluated.exit_code == 0, evaluated.output
    numbers = json.loads(evaluated.stdout)
    seam = numbers["edits"][0]["seam_score"]
    assert seam["edit"] is not None and seam["edit"] > 0 and seam["source"] is not None
    assert numbers["inversions"][0]["seam_score"]["reconstruction"] is not None
    assert "seam score" in _vdir(root, "eval").output


@pytest.mark.slow
def test_editing_with_the_source_prompt_returns_the_reconstruction(inverted, tmp_path):
    """Through windows too, every control is an identity when the prompt is the source's
    (no masks: SA-II is then an identity as well)."""
    from videodirector_cli.diffusion.editing import plan_edit, run_edit_path
    from videodirector_cli.diffusion.windows import plan_windows
    from videodirector_cli.settings.edit import EditSettings

    root, data = inverted
    project = Project.open(root)
    stored = InversionFiles(project.paths.inversion_dir(data["inversion"])).load()
    model = tiny_model()
    plan = plan_edit(model, PROMPT, PROMPT, EditSettings(), 8.5)
    windows = plan_windows(FRAMES, data["windows"]["window"], data["windows"]["overlap"])
    run = run_edit_path(model, stored, plan, windows=windows)
    assert torch.allclose(run.latents, stored.reconstruction, atol=1e-4)


def _request(**window) -> InvertRequest:
    settings = InvertSettings(
        steps=2, null_text=NullTextSettings(inner_steps=1), report=False, **window
    )
    return InvertRequest(settings=settings, model=ModelChoice(model="tiny"))


@pytest.mark.slow
def test_a_resumed_long_inversion_equals_an_uninterrupted_one(tmp_path):
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    for root in (whole, broken):
        make_long_project(root)
    quiet = Output(mode="quiet")
    done = run_invert(Project.open(whole), _request(), quiet, model=tiny_model())

    def interrupt(result):
        if result.step == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_invert(Project.open(broken), _request(), quiet, model=tiny_model(), on_step=interrupt)
    resumed = run_invert(Project.open(broken), _request(), quiet, model=tiny_model())
    assert resumed.key == done.key and resumed.data["resumed_from"] == 1
    a = InversionFiles(Project.open(whole).paths.inversion_dir(done.key)).load()
    b = InversionFiles(Project.open(broken).paths.inversion_dir(done.key)).load()
    assert torch.equal(a.pivots, b.pivots)
    for name in ("nulls", "latents", "next_latents", "guidance"):
        for x, y in zip(getattr(a, name), getattr(b, name), strict=True):
            assert torch.equal(x, y), name


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (["--window", "0"], "--window must be at least 1"),
        (["--window", "-4"], "--window must be at least 1"),
        (["--window-overlap", "-1"], "--window-overlap must be 0 or more"),
        (["--window", "8", "--window-overlap", "8"], "must be smaller than --window"),
        (["--window-overlap", "16"], "must be smaller than the window"),
        (["--window", "40"], "positional encodings for 32 frames"),
    ],
)
def test_window_options_the_model_cannot_take_are_refused_before_anything_is_written(
    tmp_path, options, says
):
    root = tmp_path / "p"
    make_long_project(root)
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    manifest = (root / "manifest.json").read_bytes()
    result = _vdir(root, "invert", *FAST, *options)
    assert result.exit_code == 2, result.output
    assert says in result.output and "Traceback" not in result.output
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before
    assert (root / "manifest.json").read_bytes() == manifest


def test_explicit_windows_make_another_inversion_than_the_default(tmp_path):
    """The window settings are part of the key only when given: the default keeps the keys of
    inversions made before they existed."""
    settings = InvertSettings()
    assert "window" not in settings.shaping() and "window_overlap" not in settings.shaping()
    given = InvertSettings(window=8, window_overlap=2).shaping()
    assert given["window"] == 8 and given["window_overlap"] == 2


def test_init_warns_when_the_default_model_needs_windows(tmp_path):
    from videodirector_cli.diffusion.windows import default_model_limits, long_clip_note

    limits = default_model_limits()
    assert limits.positions == 32 and limits.default_window == 16  # AnimateDiff v3's config
    assert long_clip_note(32, limits) is None
    note = long_clip_note(64, limits)
    assert note is not None and "7 windows of 16 frames" in note


def test_vdir_init_of_40_frames_says_that_windows_will_be_used(tmp_path):
    from _helpers_media import make_video

    video = make_video(tmp_path / "clip.mp4", frames=44)
    runner = CliRunner()
    args = ["init", str(video), str(tmp_path / "p"), "--frames", "40", "--size", "64"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "4 windows of 16 frames" in result.stderr
    short = runner.invoke(app, ["init", str(video), str(tmp_path / "q"), "--frames", "16"])
    assert short.exit_code == 0 and "windows" not in short.stderr
