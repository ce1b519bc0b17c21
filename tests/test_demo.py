"""`vdir demo` end to end on the shipped toy model, with few steps to fit the test budget."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from videodirector_cli.cli.app import app
from videodirector_cli.media.frames import read_frames
from videodirector_cli.project.store import Project


def _demo(folder: Path, steps: int | None = 3) -> dict:
    """``steps=None``: the demo's own defaults, as a user runs it."""
    fast = ["--steps", str(steps), "--inner-steps", "1"] if steps is not None else []
    result = CliRunner().invoke(app, ["demo", str(folder), *fast, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_demo_runs_the_whole_pipeline_and_resumes_as_up_to_date(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    data = _demo(folder)
    project = Project.open(Path(data["project"]))
    manifest = project.manifest
    assert manifest.frames.status == "done" and manifest.masks.status == "done"
    assert manifest.masks.params.method == "import"
    inversion = manifest.inversions[data["inversion"]]
    assert inversion.status == "done" and inversion.progress.done == 3
    assert set(manifest.edits) == {"colour", "shape"}
    assert all(record.status == "done" for record in manifest.edits.values())
    assert data["edits"]["colour"].split()[1] == "white"
    assert data["edits"]["shape"].split()[2] == "square"
    for name in ("colour", "shape"):
        video = Path(data["videos"][name])
        assert video.is_file() and video.stat().st_size > 0
        assert Path(data["sheets"][name]).is_file()
        frames = read_frames([project.paths.edit_frame(name, i) for i in range(16)])
        assert frames.shape == (16, 64, 64, 3)
    # the two edits differ from each other: the prompts reached the model
    colour = read_frames([project.paths.edit_frame("colour", i) for i in range(16)])
    shape = read_frames([project.paths.edit_frame("shape", i) for i in range(16)])
    assert np.abs(colour.astype(int) - shape.astype(int)).mean() > 0.5

    again = _demo(folder)
    assert again["inversion"] == data["inversion"]
    assert again["stage_seconds"]["invert"] < data["stage_seconds"]["invert"]


def test_demo_refuses_a_folder_that_is_not_a_demo(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    result = CliRunner().invoke(app, ["demo", str(tmp_path)])
    assert result.exit_code == 2
    assert "not a vdir demo folder" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_demo_refuses_bad_step_counts_before_writing_anything(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    for args in (["--steps", "1"], ["--inner-steps", "-1"]):
        result = CliRunner().invoke(app, ["demo", str(folder), *args])
        assert result.exit_code == 2, result.output
        assert "--steps" in result.output or "--inner-steps" in result.output
        assert not folder.exists()


@pytest.mark.slow
def test_default_demo_colour_and_shape_edits_both_succeed_by_the_scorer(tmp_path: Path) -> None:
    """The demo as a user runs it (15 steps, offline, well under 3 minutes): the shipped toy
    model and the full method turn the red circle white, and into a square, keeping its path
    and background, by the toy model's own scorer (no model involved in the scoring)."""
    from benchmarks.demo_pairs import score_edits
    from videodirector_cli.settings.demo import DemoRequest

    data = _demo(tmp_path / "demo", steps=None)
    rows = score_edits(Path(data["folder"]), DemoRequest())
    assert [row["edit"] for row in rows] == ["colour", "shape"]
    assert all(row["ok"] for row in rows), rows
    assert sum(data["stage_seconds"].values()) < 180
