"""The project store: manifest round trip, damage, atomic writes, the lock, kill -9, discovery."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from _helpers_media import make_video
from _helpers_project import inversion_record, masks_record
from typer.testing import CliRunner

from videodirector_cli.cli.app import app
from videodirector_cli.errors import LockedError, ProjectError
from videodirector_cli.project import lineage
from videodirector_cli.project.atomic import TEMP_PREFIX, atomic_path, atomic_write_text
from videodirector_cli.project.manifest import SCHEMA_VERSION, StageProgress, stage_state
from videodirector_cli.project.store import Project, find_project_root

PYTHON = sys.executable
POLL_TIMEOUT_S = 60.0


def vdir(*args, **kwargs):
    return CliRunner().invoke(app, [str(a) for a in args], **kwargs)


def vdir_process(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [PYTHON, "-m", "videodirector_cli", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        **kwargs,
    )


def wait_for(condition, what: str, timeout: float = POLL_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    video = make_video(tmp_path / "clip.mp4", frames=8)
    folder = tmp_path / "p"
    result = vdir("init", video, folder, "--frames", "4", "--size", "64")
    assert result.exit_code == 0, result.output
    return folder


# ---- manifest ----------------------------------------------------------------------------------


def test_manifest_round_trip(project_dir: Path) -> None:
    project = Project.open(project_dir)
    with project.writing("test"):
        manifest = project.manifest
        manifest.prompt = "a bear"
        manifest.inversions["k"] = inversion_record(
            status="running",
            steps=50,
            inputs=lineage.inputs_for(manifest, ["frames", "masks", "prompt"]),
            progress=StageProgress(done=3, total=50),
            metrics={"loss": 0.25},
        )
        manifest.current_inversion = "k"
        project.save()
    again = Project.open(project_dir).manifest
    assert again.model_dump() == project.manifest.model_dump()
    raw = json.loads((project_dir / "manifest.json").read_text())
    assert raw["tool"] == "vdir" and raw["schema_version"] == SCHEMA_VERSION and raw["vdir_version"]
    assert raw["frames"]["versions"]["vdir"] == raw["vdir_version"]
    assert raw["frames"]["started_at"] and raw["frames"]["finished_at"]


DAMAGE = {
    "not json": lambda text: text[: len(text) // 2],
    "wrong type": lambda text: text.replace('"status": "done"', '"status": 7', 1),
    "unknown field": lambda text: text.replace('"prompt":', '"prompto": 1, "prompt":', 1),
    "newer schema": lambda text: text.replace('"schema_version": 2', '"schema_version": 99', 1),
    "empty": lambda text: "",
}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_damaged_manifest_is_reported_and_never_overwritten(project_dir: Path, kind: str) -> None:
    manifest = project_dir / "manifest.json"
    manifest.write_text(DAMAGE[kind](manifest.read_text()))
    damaged = manifest.read_bytes()
    with pytest.raises(ProjectError):
        Project.open(project_dir)
    for args in (["status"], ["render"], ["render", "--compare"]):
        result = vdir(*args, "-p", project_dir)
        assert result.exit_code == 6, (kind, args, result.output)
        assert "manifest.json" in result.stderr and "Traceback" not in result.stderr
    assert manifest.read_bytes() == damaged
    assert not (project_dir / "renders").exists()


# ---- atomic writes -----------------------------------------------------------------------------


def test_failed_atomic_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "data.json"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half of the new")
        raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["data.json"]


KILLED_WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from videodirector_cli.project.store import Project
    from videodirector_cli.project.manifest import EditRecord
    from videodirector_cli.project.params import EditParams
    from videodirector_cli.settings.edit import EditSettings

    project = Project.open(Path(sys.argv[1]))
    with project.writing("stress"):
        for i in range(1_000_000):
            project.manifest.prompt = "x" * (i % 5000)
            params = EditParams(
                prompt=f"p{i}", source_prompt="s", inversion="k", settings=EditSettings()
            )
            project.manifest.edits[f"e{i % 50}"] = EditRecord(status="done", params=params)
            project.save()
            if i == 0:
                print("writing", flush=True)
    """
)


def test_kill_9_during_manifest_writes_leaves_a_readable_manifest(project_dir: Path) -> None:
    for delay in (0.05, 0.13, 0.31):
        writer = subprocess.Popen(
            [PYTHON, "-c", KILLED_WRITER, str(project_dir)], stdout=subprocess.PIPE, text=True
        )
        assert writer.stdout is not None and writer.stdout.readline().strip() == "writing"
        time.sleep(delay)
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        Project.open(project_dir)  # parses: the old or the new manifest, never half of one
        result = vdir("status", "-p", project_dir, "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["locked"] is False  # the kernel dropped the lock


def test_kill_9_in_the_middle_of_init_then_status_and_init_again(tmp_path: Path) -> None:
    video = make_video(tmp_path / "long.mp4", frames=60, width=128, height=128, noise=True)
    folder = tmp_path / "p"
    process = vdir_process(
        "init", video, folder, "--frames", "60", "--size", "512", "--fit", "stretch"
    )
    frames_dir = folder / "frames"
    try:
        wait_for(
            lambda: (
                process.poll() is not None
                or (frames_dir.is_dir() and len(list(frames_dir.glob("0*.png"))) >= 3)
            ),
            "init to write its first frames",
        )
        assert process.poll() is None, process.communicate()
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL

    result = vdir("status", "-p", folder, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    frames = next(r for r in report["stages"] if r["stage"] == "frames")
    assert frames["state"] == "interrupted"
    assert frames["progress"]["total"] == 60 and frames["progress"]["done"] < 60
    assert report["next"].startswith("vdir init") and report["next"].endswith("--force")
    assert vdir("status", "-p", folder).exit_code == 0

    render = vdir("render", "-p", folder)
    assert render.exit_code == 4 and "interrupted" in render.stderr

    short = make_video(tmp_path / "short.mp4", frames=8)
    again = vdir("init", short, folder, "--force", "--frames", "4", "--size", "64")
    assert again.exit_code == 0, again.output
    assert sorted(p.name for p in frames_dir.iterdir()) == [f"{i:05d}.png" for i in range(4)]
    assert not list(folder.glob(f"{TEMP_PREFIX}*"))
    assert json.loads(vdir("status", "-p", folder, "--json").stdout)["next"] == "vdir invert"


# ---- the lock ----------------------------------------------------------------------------------

HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from videodirector_cli.project.store import Project

    project = Project.open(Path(sys.argv[1]))
    with project.writing("holder"):
        print("locked", flush=True)
        sys.stdin.readline()
    """
)


def test_a_second_writer_gets_a_clear_error_and_changes_nothing(
    project_dir: Path, tmp_path: Path
) -> None:
    holder = subprocess.Popen(
        [PYTHON, "-c", HOLDER, str(project_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        before = {p: p.read_bytes() for p in project_dir.rglob("*") if p.is_file()}
        other = make_video(tmp_path / "other.mp4", frames=6)
        for args in (["render", "-p", project_dir], ["init", other, project_dir, "--force"]):
            result = vdir(*args)
            assert result.exit_code == 7, result.output
            assert "another vdir process" in result.stderr
        second = Project.open(project_dir)
        with pytest.raises(LockedError, match=r"pid \d+, holder"), second.writing("second"):
            pass
        status = vdir("status", "-p", project_dir, "--json")  # readers are never blocked
        assert status.exit_code == 0 and json.loads(status.stdout)["locked"] is True
        assert {p: p.read_bytes() for p in project_dir.rglob("*") if p.is_file()} == before
    finally:
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.close()
        holder.wait()
    assert vdir("render", "-p", project_dir, "--quiet").exit_code == 0


RACER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from videodirector_cli.errors import LockedError
    from videodirector_cli.project.store import Project

    folder, start_at = Path(sys.argv[1]), float(sys.argv[2])
    project = Project.open(folder)
    while time.time() < start_at:
        pass
    try:
        with project.writing("race"):
            began = time.time()
            time.sleep(0.3)
            project.manifest.prompt = sys.argv[3]
            project.save()
            print(f"ok {began} {time.time()}", flush=True)
    except LockedError:
        print("locked", flush=True)
    """
)


def test_concurrent_writers_never_both_succeed(project_dir: Path) -> None:
    start_at = time.time() + 1.5
    racers = [
        subprocess.Popen(
            [PYTHON, "-c", RACER, str(project_dir), str(start_at), f"writer {i}"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    outcomes = [racer.communicate(timeout=POLL_TIMEOUT_S)[0].split() for racer in racers]
    winners = [o for o in outcomes if o[0] == "ok"]
    assert len(winners) >= 1 and len(winners) + sum(o == ["locked"] for o in outcomes) == 4
    spans = sorted((float(o[1]), float(o[2])) for o in winners)
    for (_, end), (begin, _) in itertools.pairwise(spans):
        assert begin >= end  # any two that both wrote did so one after the other
    prompt = Project.open(project_dir).manifest.prompt
    assert prompt in {f"writer {i}" for i in range(4)}


# ---- discovery ---------------------------------------------------------------------------------


def test_project_discovery(project_dir: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("VDIR_PROJECT", raising=False)
    nested = project_dir / "renders" / "deep"
    nested.mkdir(parents=True)
    monkeypatch.chdir(nested)
    assert find_project_root() == project_dir.resolve()  # nearest parent with a manifest
    assert vdir("status", "--json").exit_code == 0

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = vdir("status")
    assert result.exit_code == 6 and "no vdir project" in result.stderr

    env_result = vdir("status", "--json", env={"VDIR_PROJECT": str(project_dir)})
    assert env_result.exit_code == 0
    assert json.loads(env_result.stdout)["project"] == str(project_dir.resolve())
    monkeypatch.setenv("VDIR_PROJECT", str(project_dir))
    assert find_project_root() == project_dir.resolve()

    # --project wins over the environment
    monkeypatch.setenv("VDIR_PROJECT", str(elsewhere))
    assert find_project_root(project_dir) == project_dir.resolve()
    with pytest.raises(ProjectError, match="not a vdir project"):
        find_project_root()
    assert vdir("status", "-p", project_dir).exit_code == 0
    assert vdir("status", "-p", tmp_path / "missing").exit_code == 6


# ---- staleness ---------------------------------------------------------------------------------


def test_staleness_follows_lineage(project_dir: Path) -> None:
    project = Project.open(project_dir)
    with project.writing("test"):
        manifest = project.manifest
        manifest.masks = masks_record(lineage.inputs_for(manifest, ["frames"])["frames"], "m1")
        manifest.inversions["k"] = inversion_record(
            inputs=lineage.inputs_for(manifest, ["frames", "masks", "prompt"]),
            outputs={"inversion": "i1"},
        )
        project.save()
    manifest = Project.open(project_dir).manifest
    now = lineage.current_inputs(manifest)
    assert stage_state(manifest.inversions["k"], now, locked=False) == "done"
    manifest.prompt = "a different description"
    assert stage_state(manifest.inversions["k"], lineage.current_inputs(manifest), False) == "stale"
    manifest.prompt = None
    manifest.masks.outputs["masks"] = "m2"
    assert stage_state(manifest.inversions["k"], lineage.current_inputs(manifest), False) == "stale"
    manifest.masks.status = "failed"  # no current masks at all: still not what it was made from
    assert stage_state(manifest.inversions["k"], lineage.current_inputs(manifest), False) == "stale"
