"""`vdir status`: states, progress, staleness through lineage, the next command; read-only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _helpers_media import make_video
from _helpers_project import (
    edit_record,
    inversion_files,
    inversion_record,
    masks_record,
    render_record,
)
from typer.testing import CliRunner

from videodirector_cli.cli.app import app
from videodirector_cli.project import lineage
from videodirector_cli.project.fingerprint import hash_files
from videodirector_cli.project.lock import ProjectLock
from videodirector_cli.project.manifest import NO_MASK, StageProgress
from videodirector_cli.project.paths import ProjectPaths
from videodirector_cli.project.store import Project


def vdir(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def status_json(project_dir: Path) -> dict:
    result = vdir("status", "-p", project_dir, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def states(report: dict) -> dict[str, str]:
    return {
        (r["stage"] if r["key"] is None else f"{r['stage']}:{r['key']}"): r["state"]
        for r in report["stages"]
    }


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    video = make_video(tmp_path / "clip.mp4", frames=8)
    folder = tmp_path / "p"
    result = vdir("init", video, folder, "--frames", "4", "--size", "64", "--prompt", "a thing")
    assert result.exit_code == 0, result.output
    return folder


def edit_files(folder: Path, name: str, content: bytes, count: int = 4) -> str:
    """An edit's frames (and latents) as their record says; the frames' hash."""
    paths = ProjectPaths(folder)
    frames = [paths.edit_frame(name, i) for i in range(count)]
    frames[0].parent.mkdir(parents=True, exist_ok=True)
    for path in frames:
        path.write_bytes(content + path.name.encode())
    return hash_files(frames)


def edit_project(folder: Path, change) -> None:
    project = Project.open(folder)
    with project.writing("test"):
        change(project.manifest)
        project.save()


def test_after_init(project_dir: Path) -> None:
    report = status_json(project_dir)
    assert states(report) == {"frames": "done", "masks": "missing"}
    assert report["next"] == "vdir invert"
    assert report["source"]["frames"] == 4 and report["prompt"] == "a thing"
    assert report["locked"] is False


def test_whole_pipeline_states_and_next_command(project_dir: Path) -> None:
    def add_inversion(manifest):
        manifest.inversions["k1"] = inversion_record(
            lineage.inputs_for(manifest, ["frames", "masks", "prompt"]),
            {"inversion": inversion_files(project_dir, "k1", b"one")},
        )
        manifest.current_inversion = "k1"

    edit_project(project_dir, add_inversion)
    assert status_json(project_dir)["next"] == 'vdir edit "TARGET PROMPT"'

    def add_edit(manifest):
        manifest.edits["tiger"] = edit_record(
            lineage.inputs_for(manifest, ["inversion:k1", "masks"]),
            {"edit": edit_files(project_dir, "tiger", b"one")},
        )

    edit_project(project_dir, add_edit)
    assert status_json(project_dir)["next"] == "vdir render tiger"

    def add_render(manifest):
        manifest.renders["tiger"] = render_record(
            lineage.inputs_for(manifest, ["frames", "edit:tiger"])
        )

    edit_project(project_dir, add_render)
    report = status_json(project_dir)
    assert report["next"] is None and report["reason"] == "everything is up to date"
    assert set(states(report).values()) == {"done", "missing"}

    # A new inversion result makes the edit stale, and the render of that edit with it.
    def redo_inversion(manifest):
        manifest.inversions["k1"].outputs["inversion"] = inversion_files(project_dir, "k1", b"2")

    edit_project(project_dir, redo_inversion)
    report = status_json(project_dir)
    assert states(report)["edit:tiger"] == "stale"
    assert states(report)["render:tiger"] == "done"  # its input (the edit's hash) did not change
    assert report["next"] == "vdir edit" and "tiger" in report["reason"]

    def redo_edit(manifest):
        manifest.edits["tiger"] = edit_record(
            lineage.inputs_for(manifest, ["inversion:k1", "masks"]),
            {"edit": edit_files(project_dir, "tiger", b"two")},
        )

    edit_project(project_dir, redo_edit)
    report = status_json(project_dir)
    assert states(report)["edit:tiger"] == "done"
    assert states(report)["render:tiger"] == "stale"
    assert report["next"] == "vdir render tiger"


def test_masks_used_or_not(project_dir: Path) -> None:
    def mask_files(content: bytes) -> str:
        files = ProjectPaths(project_dir).mask_files(4)
        files[0].parent.mkdir(exist_ok=True)
        for path in files:
            path.write_bytes(content)
        return hash_files(files)

    def setup(manifest):
        manifest.inversions["nomask"] = inversion_record(
            lineage.inputs_for(manifest, ["frames", "masks"], use_masks=False),
            {"inversion": inversion_files(project_dir, "nomask", b"a")},
        )
        manifest.masks = masks_record(manifest.frames.outputs["frames"], mask_files(b"1"))
        manifest.inversions["masked"] = inversion_record(
            lineage.inputs_for(manifest, ["frames", "masks"]),
            {"inversion": inversion_files(project_dir, "masked", b"b")},
        )

    edit_project(project_dir, setup)
    assert Project.open(project_dir).manifest.inversions["nomask"].inputs["masks"] == NO_MASK

    def new_masks(manifest):
        manifest.masks.outputs["masks"] = mask_files(b"2")

    edit_project(project_dir, new_masks)
    found = states(status_json(project_dir))
    assert found["inversion:nomask"] == "done"  # never used a mask
    assert found["inversion:masked"] == "stale"


def test_running_interrupted_and_progress(project_dir: Path) -> None:
    def start_inversion(manifest):
        manifest.inversions["k1"] = inversion_record(
            status="running",
            inputs=lineage.inputs_for(manifest, ["frames", "masks", "prompt"]),
            progress=StageProgress(done=23, total=50),
            metrics={"loss": 0.0123},
        )

    edit_project(project_dir, start_inversion)
    report = status_json(project_dir)  # nobody holds the lock: the writer died
    row = next(r for r in report["stages"] if r["stage"] == "inversion")
    assert row["state"] == "interrupted"
    assert row["progress"] == {"done": 23, "total": 50} and row["metrics"]["loss"] == 0.0123
    assert report["next"] == "vdir invert" and "resume" in report["reason"]

    human = vdir("status", "-p", project_dir)
    assert human.exit_code == 0
    assert (
        "interrupted" in human.stdout and "23/50" in human.stdout and "loss=0.0123" in human.stdout
    )

    with ProjectLock(Project.open(project_dir).paths.lock, "invert"):  # a live writer
        report = status_json(project_dir)
    assert states(report)["inversion:k1"] == "running" and report["locked"] is True
    assert report["next"] is None and "running" in report["reason"]


def test_interrupted_frames_suggest_init_again(project_dir: Path) -> None:
    def break_frames(manifest):
        manifest.frames.status = "running"

    edit_project(project_dir, break_frames)
    report = status_json(project_dir)
    assert states(report)["frames"] == "interrupted"
    assert report["next"].startswith("vdir init ") and report["next"].endswith("--force")


def test_status_is_read_only(project_dir: Path) -> None:
    def files():
        return {
            str(p.relative_to(project_dir)): (p.stat().st_mtime_ns, p.read_bytes())
            for p in project_dir.rglob("*")
            if p.is_file()
        }

    before = files()
    for args in (["--json"], [], ["--quiet"]):
        assert vdir("status", "-p", project_dir, *args).exit_code == 0
    assert files() == before


def test_status_human_goes_to_stdout_json_is_pure(project_dir: Path) -> None:
    human = vdir("status", "-p", project_dir)
    assert "frames" in human.stdout and "next: vdir invert" in human.stdout
    assert human.stderr == ""
    quiet = vdir("status", "-p", project_dir, "--quiet")
    assert quiet.stdout == "" and quiet.stderr == ""


def test_status_outside_a_project_and_with_a_damaged_manifest(
    tmp_path: Path, project_dir: Path
) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    result = vdir("status", "-p", outside)
    assert result.exit_code == 6 and "not a vdir project" in result.stderr
    manifest = project_dir / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"status": "done"', '"status": "finished"', 1))
    damaged = manifest.read_bytes()
    result = vdir("status", "-p", project_dir)
    assert result.exit_code == 6 and "damaged" in result.stderr
    assert manifest.read_bytes() == damaged
