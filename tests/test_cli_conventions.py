"""Conventions every command keeps: --json/--quiet, exit codes, one-line errors, --help."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _helpers_media import make_video
from typer.testing import CliRunner

from videodirector_cli import errors
from videodirector_cli.cli.app import app

PYTHON = sys.executable


def vdir(*args, **kwargs):
    return CliRunner().invoke(app, [str(a) for a in args], **kwargs)


def run_vdir(*args, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYTHON, "-m", "videodirector_cli", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


@pytest.fixture
def video(tmp_path: Path) -> Path:
    return make_video(tmp_path / "clip.mp4", frames=8)


@pytest.fixture
def project_dir(tmp_path: Path, video: Path) -> Path:
    folder = tmp_path / "p"
    assert vdir("init", video, folder, "--frames", "4", "--size", "64").exit_code == 0
    return folder


def test_exit_codes_are_distinct_per_error_kind() -> None:
    kinds = [
        errors.UsageError,
        errors.InputError,
        errors.MissingPrerequisiteError,
        errors.StaleError,
        errors.ProjectError,
        errors.LockedError,
        errors.ModelError,
        errors.ResourceError,
        errors.NumericalError,
        errors.InterruptedByUser,
    ]
    codes = [kind.exit_code for kind in kinds]
    assert len(set(codes)) == len(codes) and 0 not in codes and 1 not in codes
    assert errors.UsageError.exit_code == 2 and errors.InterruptedByUser.exit_code == 130


def test_every_command_has_help() -> None:
    names = [command.name for command in app.registered_commands]
    for name in ("init", "status", "render"):
        assert name in names
    for name in names:
        result = vdir(name, "--help")
        assert result.exit_code == 0, name
        assert "Usage" in result.output and len(result.output) > 200, name
    assert vdir("--help").exit_code == 0


def test_help_does_not_import_heavy_libraries() -> None:
    code = (
        "import sys; import videodirector_cli.cli.app; "
        "print([m for m in ('torch', 'diffusers', 'av', 'sam2') if m in sys.modules])"
    )
    result = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_json_is_one_document_on_stdout(tmp_path: Path, video: Path) -> None:
    for args in (
        ["init", video, tmp_path / "j", "--frames", "4", "--size", "64", "--json"],
        ["status", "-p", tmp_path / "j", "--json"],
        ["render", "-p", tmp_path / "j", "--json"],
    ):
        result = run_vdir(*args)  # a real process: stdout and stderr are really separate
        assert result.returncode == 0, result.stderr
        assert isinstance(json.loads(result.stdout), dict)
        assert result.stderr == ""  # not interactive: no progress bars, no chatter


def test_quiet_prints_nothing_on_success(tmp_path: Path, video: Path) -> None:
    for args in (
        ["init", video, tmp_path / "q", "--frames", "4", "--size", "64", "--quiet"],
        ["render", "-p", tmp_path / "q", "-q"],
        ["status", "-p", tmp_path / "q", "-q"],
    ):
        result = run_vdir(*args)
        assert result.returncode == 0 and result.stdout == "" and result.stderr == "", args


def test_human_mode_says_what_happened_on_stderr(tmp_path: Path, video: Path) -> None:
    result = run_vdir("init", video, tmp_path / "h", "--frames", "4", "--size", "64")
    assert result.returncode == 0 and result.stdout == ""
    assert "Created project" in result.stderr and "Next: vdir invert" in result.stderr


def test_errors_are_one_line_with_the_class_exit_code(
    tmp_path: Path, project_dir: Path, video: Path
) -> None:
    text = tmp_path / "text.mp4"
    text.write_text("hello")
    cases = [
        (["init", video, tmp_path / "x", "--size", "100"], errors.UsageError),
        (["init", text, tmp_path / "x"], errors.InputError),
        (["render", "-p", project_dir, "nothing"], errors.MissingPrerequisiteError),
        (["init", video, project_dir], errors.ProjectError),
        (["status", "-p", tmp_path], errors.ProjectError),
    ]
    for args, kind in cases:
        result = run_vdir(*args, "--json")
        assert result.returncode == kind.exit_code, (args, result.stderr)
        document = json.loads(result.stdout)  # one error document for pipelines, no half result
        assert document["ok"] is False and document["error"]["kind"] == kind.__name__
        assert document["error"]["exit_code"] == kind.exit_code and document["schema_version"]
        assert result.stderr.startswith("vdir: error: ") and result.stderr.count("\n") == 1
        assert "Traceback" not in result.stderr


def test_vdir_debug_shows_the_traceback(tmp_path: Path) -> None:
    text = tmp_path / "text.mp4"
    text.write_text("hello")
    plain = run_vdir("init", text, tmp_path / "x")
    debug = run_vdir("init", text, tmp_path / "x", env={"VDIR_DEBUG": "1"})
    assert "Traceback" not in plain.stderr
    assert "Traceback" in debug.stderr and "InputError" in debug.stderr
    assert debug.returncode != 0 and not (tmp_path / "x").exists()


def test_typer_usage_errors_exit_2(tmp_path: Path) -> None:
    assert vdir("init").exit_code == 2  # missing VIDEO
    assert vdir("status", "--no-such-option").exit_code == 2
    assert vdir("init", "v.mp4", "--frames", "many").exit_code == 2


def _frames_stage_running(project_dir: Path, total: int) -> bool:
    frames = json.loads((project_dir / "manifest.json").read_text()).get("frames") or {}
    progress = frames.get("progress") or {}
    return frames.get("status") == "running" and progress.get("total") == total


def test_ctrl_c_exits_130_and_a_new_project_is_removed_again(tmp_path: Path) -> None:
    long_video = make_video(tmp_path / "long.mp4", frames=60, width=128, height=128, noise=True)
    project_dir = tmp_path / "new"
    process = subprocess.Popen(
        [PYTHON, "-m", "videodirector_cli", "init", str(long_video), str(project_dir),
         "--frames", "60", "--size", "512", "--fit", "stretch"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while process.poll() is None and time.monotonic() < deadline:
        ready = (project_dir / "manifest.json").is_file() and (
            project_dir / "frames/00004.png"
        ).exists()
        if ready and _frames_stage_running(project_dir, total=60):
            break
        time.sleep(0.02)
    assert process.poll() is None, process.communicate()
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert not project_dir.exists()  # a folder init made is removed again


def test_ctrl_c_during_init_force_leaves_the_old_project(tmp_path: Path, project_dir: Path) -> None:
    from videodirector_cli.project.atomic import TEMP_PREFIX

    def files() -> dict[str, bytes]:
        return {
            str(p.relative_to(project_dir)): p.read_bytes()
            for p in sorted(project_dir.rglob("*"))
            if p.is_file() and p.name != "lock"
        }

    before = files()
    long_video = make_video(tmp_path / "long.mp4", frames=60, width=128, height=128, noise=True)
    process = subprocess.Popen(
        [PYTHON, "-m", "videodirector_cli", "init", str(long_video), str(project_dir), "--force",
         "--frames", "60", "--size", "512", "--fit", "stretch"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while process.poll() is None and time.monotonic() < deadline:
        # The new frames are written beside the old project: a fifth one means it is writing.
        if list(project_dir.glob(f"{TEMP_PREFIX}frames-new-*/00004.png")):
            break
        time.sleep(0.02)
    assert process.poll() is None, process.communicate()
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert files() == before  # the old project, exactly
    assert not list(project_dir.glob(f"{TEMP_PREFIX}*"))
    report = json.loads(vdir("status", "-p", project_dir, "--json").stdout)
    assert next(r for r in report["stages"] if r["stage"] == "frames")["state"] == "done"
