"""Nothing read from manifest.json is trusted: names that become paths follow the command line's
rule, numbers are range-checked, and a manifest that breaks a rule is reported as damaged (exit
6), with the project and everything outside it left byte for byte as they were."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _helpers_faults import one_error_line, small_project, snapshot, vdir
from _helpers_project import EDITED_EDIT, copy_project, edit_record, inversion_record

from videodirector_cli.project.paths import ProjectPaths


def _edit(**changes: Any) -> dict[str, Any]:
    return edit_record(outputs={"edit": "x"}, **changes).model_dump(mode="json")


def _inversion() -> dict[str, Any]:
    return inversion_record(outputs={"inversion": "x"}).model_dump(mode="json")


def _render(crf: int) -> dict[str, Any]:
    return {"status": "done", "params": {"compare": False, "crf": crf, "fps": 8.0, "out": ""}}


def _set(path: list[Any], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(raw: dict[str, Any]) -> None:
        target = raw
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value

    return change


CRAFTED: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "edit name leaving the project": (_set(["edits", "../../outside"], _edit()), "edits."),
    "edit name with a slash": (_set(["edits", "a/b"], _edit()), "edits.a/b"),
    "absolute render name": (_set(["renders", "/tmp/x"], _render(crf=18)), "renders./tmp/x"),
    "inversion key leaving the project": (_set(["inversions", ".."], _inversion()), "inversions"),
    "current inversion leaving the project": (
        _set(["current_inversion"], "../../etc"),
        "current_inversion",
    ),
    "edit made from a key leaving the project": (
        _set(["edits", "tiger"], _edit(inversion="../x")),
        "edits.tiger.params.inversion",
    ),
    "ten million frames": (
        _set(["frames", "params", "frames"], 10_000_000),
        "frames.params.frames",
    ),
    "frames of size 0": (_set(["frames", "params", "size"], [0, 64]), "frames.params.size"),
    "a negative frame rate": (_set(["source", "output_fps"], -8.0), "source.output_fps"),
    "negative progress": (
        _set(["frames", "progress"], {"done": -1, "total": 4}),
        "frames.progress.done",
    ),
    "an inversion of 0 steps": (
        _set(["inversions", "k"], inversion_record(steps=0).model_dump(mode="json")),
        "inversions.k.params.settings",
    ),
    "an edit of -5 frames": (
        _set(["edits", "tiger"], {**_edit(), "metrics": {"frames": -5}}),
        "edits.tiger.metrics.frames",
    ),
    "crf 99": (_set(["renders", "source"], _render(crf=99)), "renders.source.params.crf"),
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_a_crafted_manifest_is_reported_as_damaged_and_nothing_is_written(
    tmp_path: Path, case: str
) -> None:
    root = small_project(tmp_path)
    manifest = ProjectPaths(root).manifest
    raw = json.loads(manifest.read_text())
    change, where = CRAFTED[case]
    change(raw)
    manifest.write_text(json.dumps(raw, indent=2))
    before = snapshot(tmp_path)

    for command in (["status"], ["render"], ["render", "../../outside"], ["invert", "--plan"]):
        result = vdir(*command, "-p", root)
        one_error_line(result, 6, "manifest.json is damaged", where)
    assert snapshot(tmp_path) == before  # nothing inside the project or beside it


def test_names_from_the_command_line_follow_the_same_rule(tmp_path: Path, edited_project) -> None:
    root = copy_project(edited_project.root, tmp_path)
    before = snapshot(tmp_path)
    one_error_line(vdir("render", "../../outside", "-p", root), 4, "no edit named")
    one_error_line(vdir(*EDITED_EDIT, "--name", "../x", "-p", root), 2, "--name")
    assert snapshot(tmp_path) == before


def test_paths_refuse_a_name_that_leaves_its_folder(tmp_path: Path) -> None:
    from videodirector_cli.errors import ProjectError

    paths = ProjectPaths(tmp_path)
    for name in ("..", "../x", "a/b", "/abs", "", ".hidden"):
        with pytest.raises(ProjectError, match="not a plain name"):
            paths.edit_dir(name)
        with pytest.raises(ProjectError, match="not a plain name"):
            paths.inversion_dir(name)
    assert paths.edit_dir("tiger-2") == tmp_path / "edits" / "tiger-2"
