"""`vdir eval`: numbers for an edit and its inversion, with and without masks; reads only.

Projects come from the editing tests' helper (tiny model, a real on-disk inversion); the model
loader is replaced by the cached tiny model.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from _helpers_editing import fast_model_loader, make_project_with_inversion
from typer.testing import CliRunner

from videodirector_cli import metrics
from videodirector_cli.cli.app import app
from videodirector_cli.media.frames import read_frames, write_png
from videodirector_cli.project.store import Project
from videodirector_cli.stages.evaluate import edit_numbers

EDITED = "white-tiger"


def vdir(root, *args: str):
    return CliRunner().invoke(app, [*args, "--project", str(root)])


def snapshot(root) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture
def masked(edited_project):
    """The session's project with masks and the edit EDITED (conftest.py): read only."""
    return edited_project.root


def copy_of(root, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    return copy


@pytest.fixture(autouse=True)
def tiny_loader(monkeypatch):
    monkeypatch.setattr("videodirector_cli.diffusion.loading.load_model", fast_model_loader)


def test_eval_of_an_edit_with_masks(masked):
    before = snapshot(masked)
    result = vdir(masked, "eval", EDITED, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    (edit,) = data["edits"]
    assert edit["name"] == EDITED and edit["mask"] == "project"
    project = Project.open(masked)
    source = read_frames(project.paths.frame_files(project.manifest.frame_count))
    edited = read_frames([project.paths.edit_frame(EDITED, i) for i in range(len(source))])
    from videodirector_cli.project.readers import read_project_masks

    masks = read_project_masks(project)
    assert edit["background_psnr"] == pytest.approx(metrics.psnr(edited, source, ~masks), abs=1e-3)
    assert edit["object_psnr"] == pytest.approx(metrics.psnr(edited, source, masks), abs=1e-3)
    smooth = edit["smoothness"]
    assert smooth["source"]["frame_difference"] == pytest.approx(
        metrics.frame_difference(source), abs=1e-5
    )
    (inversion,) = data["inversions"]
    assert inversion["from"] == "decoded" and np.isfinite(inversion["reconstruction_psnr"])
    assert snapshot(masked) == before  # eval writes nothing


def test_eval_without_masks_says_what_it_needs(masked, monkeypatch):
    # a project without masks: read_project_masks returns None
    monkeypatch.setattr("videodirector_cli.stages.evaluate.read_project_masks", lambda p: None)
    unmasked = masked
    result = vdir(unmasked, "eval", "--no-inversion", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    (edit,) = data["edits"]
    assert edit["background_psnr"] is None and edit["mask"] == "none"
    assert data["inversions"] == []
    assert any("vdir mask" in note for note in data["notes"])
    human = vdir(unmasked, "eval", "--no-inversion")
    assert human.exit_code == 0 and "needs a mask" in " ".join(human.output.split())


def test_recorded_reconstruction_psnr_is_used(tmp_path):
    root = tmp_path / "p"
    make_project_with_inversion(root)
    project = Project.open(root)
    with project.writing("test"):
        key = project.manifest.current_inversion
        report = {"optimised": {"psnr": 31.5}, "plain_ddim": {"psnr": 18.25}, "vae_psnr": 35.0}
        project.manifest.inversions[key].metrics["report"] = report
        project.save()
    result = vdir(root, "eval", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["edits"] == []
    assert data["inversions"] == [
        {
            "key": key,
            "reconstruction_psnr": 31.5,
            "plain_ddim_psnr": 18.25,
            "vae_psnr": 35.0,
            "from": "manifest",
        }
    ]
    human = " ".join(vdir(root, "eval").output.split())  # undo rich's wrapping
    assert "31.50 dB" in human and "plain DDIM inversion 18.25 dB" in human


def test_recorded_psnr_forms():
    from videodirector_cli.stages.evaluate import recorded_reconstruction

    perfect = recorded_reconstruction({"report": {"optimised": {"psnr": float("inf")}}})
    assert perfect is not None and perfect["reconstruction_psnr"] == metrics.PSNR_CAP
    assert recorded_reconstruction({"recon_psnr": 20}) is None  # a key vdir never writes
    assert recorded_reconstruction({"report": None, "losses": [1.0]}) is None


def test_unknown_edit_and_bad_dilate(masked):
    missing = vdir(masked, "eval", "zebra")
    assert missing.exit_code == 4 and "no edit named 'zebra'" in missing.output
    bad = vdir(masked, "eval", "--dilate", "-1")
    assert bad.exit_code == 2


def test_changed_edit_frames_are_refused(masked, tmp_path):
    root = copy_of(masked, tmp_path)
    project = Project.open(root)
    write_png(project.paths.edit_frame(EDITED, 0), np.zeros((32, 32, 3), dtype=np.uint8))
    result = vdir(root, "eval", EDITED, "--no-inversion")
    assert result.exit_code == 5 and "changed" in result.output


def test_edit_numbers_mask_margin():
    rng = np.random.default_rng(0)
    source = rng.integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    masks = np.zeros((4, 16, 16), dtype=bool)
    masks[:, 6:10, 6:10] = True
    edited = source.copy()
    edited[:, 5:11, 5:11] = 0  # the edit spills one pixel past the mask
    tight = edit_numbers(source, edited, masks, dilate=0)
    loose = edit_numbers(source, edited, masks, dilate=1)
    assert tight["background_psnr"] < 40
    assert loose["background_psnr"] == metrics.PSNR_CAP
    assert loose["background_share"] < tight["background_share"]
