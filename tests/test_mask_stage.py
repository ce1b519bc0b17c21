"""`vdir mask` orchestration: box masks, previews, manifest, staleness, and every bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _helpers_masks import make_project, moving_disk_frames, snapshot
from _helpers_project import frames_record, inversion_record, masks_record
from typer.testing import CliRunner

from videodirector_cli.cli.app import app
from videodirector_cli.errors import InputError, MissingPrerequisiteError, StaleError, UsageError
from videodirector_cli.masks.shapes import Box, box_mask, parse_box, parse_point
from videodirector_cli.media.frames import write_mask, write_png
from videodirector_cli.output import Output
from videodirector_cli.project import lineage
from videodirector_cli.project.fingerprint import hash_files
from videodirector_cli.project.manifest import NO_MASK, stage_state
from videodirector_cli.project.readers import read_project_masks
from videodirector_cli.project.store import Project
from videodirector_cli.settings.mask import MaskRequest
from videodirector_cli.stages import mask as mask_stage
from videodirector_cli.stages.mask import run_mask


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return make_project(tmp_path / "proj", moving_disk_frames(count=4, size=64))


def _vdir(project: Project, *args: str) -> object:
    return CliRunner().invoke(app, ["mask", *args, "-p", str(project.paths.root)])


def test_box_without_sam2_writes_masks_previews_and_manifest(project: Project) -> None:
    result = _vdir(project, "--box", "10,20,40,50", "--no-sam2", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    expected = box_mask((64, 64), Box(10, 20, 40, 50))
    assert expected.sum() == 30 * 30
    assert data["coverage"] == [pytest.approx(900 / 4096, abs=1e-6)] * 4
    assert data["ellipse"] is False, "no ellipse by default for --no-sam2 shapes"

    masks = read_project_masks(Project.open(project.paths.root))
    assert masks is not None and masks.shape == (4, 64, 64)
    assert (masks == expected).all()

    import av

    with av.open(str(project.paths.mask_overlay_video)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 4
    from PIL import Image

    with Image.open(project.paths.mask_sheet) as sheet:
        assert sheet.size == (4 * 64 + 3 * 2, 64)

    record = Project.open(project.paths.root).manifest.masks
    assert record is not None and record.status == "done"
    assert record.params.model_dump(exclude_none=True) == {
        "method": "shape",
        "box": [10.0, 20.0, 40.0, 50.0],
        "shape": "box",
        "ellipse": False,
    }
    assert record.inputs == {"frames": project.manifest.frames.outputs["frames"]}
    assert record.outputs["masks"] == hash_files(project.paths.mask_files(4))
    assert len(record.metrics["coverage"]) == 4
    assert not list(project.paths.root.glob(".tmp-*")), "no staging folder left behind"


def test_ellipse_shape_is_inscribed(project: Project) -> None:
    result = _vdir(project, "--box", "8,16,56,40", "--no-sam2", "--shape", "ellipse", "-q")
    assert result.exit_code == 0, result.output
    masks = read_project_masks(Project.open(project.paths.root))
    assert masks is not None
    area = np.pi * 24 * 12
    assert abs(masks[0].sum() - area) / area < 0.05
    assert masks[0][28, 32] and not masks[0][16, 8] and not masks[0][39, 55]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--point", "70,10"], "outside the frame"),
        (["--point", "10,-1"], "outside the frame"),
        (["--box", "10,10,65,30"], "outside the frame"),
        (["--box", "10,10,65,30", "--no-sam2"], "outside the frame"),
        (
            ["--point", "10,10", "--frame", "4"],
            "--frame 4 is out of range: the project has 4 frames",
        ),
        (["--point", "10,10", "--frame", "-1"], "out of range"),
        (["--box", "40,10,20,30"], "x0 (40) must be less than x1 (20)"),
        (["--box", "10,30,20,10", "--no-sam2"], "y0 (30) must be less than y1 (10)"),
        (["--box", "1,2,3"], "is not X0,Y0,X1,Y1"),
        (["--point", "a,2"], "is not a number"),
        (["--point", "1,2,5"], "label must be 1"),
        ([], "say what to mask"),
        (["--point", "10,10", "--no-sam2"], "--point needs SAM2"),
        (["--no-sam2"], "--no-sam2 needs --box"),
        (["--from", ".", "--box", "1,1,5,5"], "cannot be combined"),
        (["--box", "1,1,5,5", "--no-sam2", "--frame", "1"], "--frame only applies"),
        (["--box", "1,1,5,5", "--shape", "ellipse"], "--shape only applies with --no-sam2"),
        (["--box", "1,1,5,5", "--no-sam2", "--shape", "star"], "is not one of: box, ellipse"),
        (["--box", "1,1,5,5", "--no-sam2", "--sam2", "large"], "only apply to SAM2 prompts"),
        (["--point", "5,5", "--sam2", "huge"], "is not one of"),
        (["--point", "5,5", "--sam2-config", "sam2.1_hiera_t"], "needs --sam2-checkpoint"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(
    project: Project, args: list[str], message: str
) -> None:
    first = _vdir(project, "--box", "10,20,40,50", "--no-sam2", "-q")
    assert first.exit_code == 0, first.output
    before = snapshot(project.paths.root)
    result = _vdir(project, *args)
    assert result.exit_code == UsageError.exit_code, result.output
    assert message in result.output
    assert result.output.count("\n") == 1, "one clear line"
    assert snapshot(project.paths.root) == before


def test_empty_result_keeps_previous_masks(project: Project) -> None:
    first = _vdir(project, "--box", "10,20,40,50", "--no-sam2", "-q")
    assert first.exit_code == 0
    before = snapshot(project.paths.root)
    # A box between pixel centres selects no pixel at all.
    result = _vdir(project, "--box", "10.6,10.6,11.4,11.4", "--no-sam2")
    assert result.exit_code == InputError.exit_code
    assert (
        "the object was not found in any frame; the previous masks are unchanged" in result.output
    )
    assert snapshot(project.paths.root) == before


def test_failure_while_writing_keeps_previous_masks(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_mask(project, MaskRequest(box=Box(10, 20, 40, 50), no_sam2=True), Output(mode="quiet"))
    before = snapshot(project.paths.root)

    def broken_write(*args: object, **kwargs: object) -> None:
        raise OSError("disk full (simulated)")

    monkeypatch.setattr("videodirector_cli.media.encode.write_mp4", broken_write)
    with pytest.raises(OSError, match="disk full"):
        run_mask(project, MaskRequest(box=Box(0, 0, 20, 20), no_sam2=True), Output(mode="quiet"))
    assert snapshot(project.paths.root) == before
    assert not list(project.paths.root.glob(".tmp-*"))


def test_no_frames_is_a_missing_prerequisite(tmp_path: Path) -> None:
    bare = Project.create(tmp_path / "bare")
    with bare.writing("test"):
        bare.save()
    with pytest.raises(MissingPrerequisiteError, match="no frames"):
        run_mask(
            Project.open(bare.paths.root),
            MaskRequest(box=Box(0, 0, 5, 5), no_sam2=True),
            Output(mode="quiet"),
        )
    assert read_project_masks(Project.open(bare.paths.root)) is None


def test_changed_masks_make_inversions_stale(project: Project) -> None:
    quiet = Output(mode="quiet")
    assert read_project_masks(project) is None
    run_mask(project, MaskRequest(box=Box(10, 20, 40, 50), no_sam2=True), quiet)
    with project.writing("test-inversion"):
        for key, use_masks in (("with-masks", True), ("no-masks", False)):
            project.manifest.inversions[key] = inversion_record(
                inputs=lineage.inputs_for(
                    project.manifest, ["frames", "masks"], use_masks=use_masks
                ),
                outputs={"inversion": key},
            )
        project.save()

    def states() -> dict[str, str]:
        manifest = Project.open(project.paths.root).manifest
        now = lineage.current_inputs(manifest)
        return {
            key: stage_state(rec, now, locked=False) for key, rec in manifest.inversions.items()
        }

    same = run_mask(project, MaskRequest(box=Box(10, 20, 40, 50), no_sam2=True), quiet)
    assert same.data["now_stale"] == []
    assert states() == {"with-masks": "done", "no-masks": "done"}

    changed = run_mask(project, MaskRequest(box=Box(5, 5, 30, 30), no_sam2=True), quiet)
    assert changed.data["now_stale"] == ["inversion with-masks"]
    assert states() == {"with-masks": "stale", "no-masks": "done"}
    assert project.manifest.inversions["no-masks"].inputs["masks"] == NO_MASK


def test_read_project_masks_detects_stale_masks(project: Project) -> None:
    run_mask(project, MaskRequest(box=Box(10, 20, 40, 50), no_sam2=True), Output(mode="quiet"))
    assert read_project_masks(Project.open(project.paths.root)) is not None

    # A hand-edited mask file no longer matches what the manifest (and inversions) recorded.
    original = project.paths.mask(1).read_bytes()
    write_mask(project.paths.mask(1), np.ones((64, 64), dtype=bool))
    with pytest.raises(StaleError, match="changed after vdir mask wrote them"):
        read_project_masks(Project.open(project.paths.root))
    project.paths.mask(1).write_bytes(original)

    # A missing mask file: count differs from the frames.
    project.paths.mask(3).rename(project.paths.root / "aside.png")
    with pytest.raises(StaleError, match="holds 3 masks for 4 frames"):
        read_project_masks(Project.open(project.paths.root))
    (project.paths.root / "aside.png").rename(project.paths.mask(3))
    assert read_project_masks(Project.open(project.paths.root)) is not None

    # New frames: the masks were made for other ones.
    with (
        project.writing("test-reinit"),
        project.stage(("frames", None), params=frames_record(4).params, inputs={}) as run,
    ):
        write_png(project.paths.frame(0), np.zeros((64, 64, 3), dtype=np.uint8))
        run.record.outputs["frames"] = hash_files(project.paths.frame_files(4))
    with pytest.raises(StaleError, match="made for other frames"):
        read_project_masks(Project.open(project.paths.root))


def test_interrupted_mask_run_is_reported(project: Project) -> None:
    with project.writing("test"):
        project.manifest.masks = masks_record("", "", status="interrupted")
        project.save()
    with pytest.raises(MissingPrerequisiteError, match="interrupted"):
        read_project_masks(Project.open(project.paths.root))


def test_prompt_parsing() -> None:
    assert parse_point("12.5, 7") == mask_stage.shapes.Point(12.5, 7.0, 1)
    assert parse_point("3,4,0").label == 0
    assert parse_box("1,2,3,4") == Box(1, 2, 3, 4)
    with pytest.raises(UsageError):
        parse_point("nan,3")
