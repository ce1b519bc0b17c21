"""Conventions users trip over: shell completion, schema_version in every --json document,
`--project` naming a file, `render --out` without a NAME."""

from __future__ import annotations

import json
from pathlib import Path

from _helpers_faults import one_error_line, small_project, vdir


def test_shell_completion_is_offered() -> None:
    result = vdir("--help")
    assert result.exit_code == 0
    assert "--install-completion" in result.output and "--show-completion" in result.output


def test_every_json_result_has_a_schema_version(tmp_path: Path) -> None:
    root = small_project(tmp_path)
    for args in (["status"], ["render"], ["invert", "--plan", "--model", "tiny"]):
        result = vdir(*args, "-p", root, "--json")
        assert result.exit_code == 0, (args, result.output)
        document = json.loads(result.stdout)
        assert document["schema_version"] == 1, args
    status = json.loads(vdir("status", "-p", root, "--json").stdout)
    assert status["manifest_schema_version"] == 2


def test_project_pointing_at_a_file(tmp_path: Path) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    one_error_line(vdir("status", "-p", a_file), 6, "is a file", "notes.txt")


def test_render_out_without_a_name(tmp_path: Path) -> None:
    root = small_project(tmp_path)
    out = tmp_path / "elsewhere" / "clip.mp4"
    result = vdir("render", "--out", out, "-p", root)  # only the source to render
    assert result.exit_code == 0, result.output
    assert out.is_file() and out.with_suffix(".png").is_file()
    one_error_line(vdir("render", "a", "b", "--out", out, "-p", root), 2, "--out takes one NAME")
