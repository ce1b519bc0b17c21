"""The layering docs/architecture.md draws, checked on the source: every import of every module
(inside functions and under TYPE_CHECKING too), parsed with ``ast``, and the size of modules."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "videodirector_cli"
ROOT = "videodirector_cli"

FORBIDDEN: dict[str, tuple[str, ...]] = {
    "diffusion": ("stages", "project", "cli"),
    "project": ("diffusion", "stages", "cli"),
    "stages": ("cli",),
    "media": ("stages", "cli"),
    "masks": ("stages", "cli"),
    "settings": ("diffusion", "project", "stages", "cli"),
    "report": ("diffusion", "project", "stages", "cli"),
}
"""Package -> the packages its modules never import."""

EXEMPT_IMPORTS: set[str] = set()

STAGE_HELPERS = {
    "outcome",
    "common",
    "inversion_files",
    "edit_names",
    "invert_history",
    "planning",
    "batch_tasks",
}
"""stages/ modules shared by the stages: they never import a stage module."""
PIPELINE = {"demo", "report", "batch"}
"""The demo and the batch run the other stages and the report shows what status and eval
compute: the stage modules allowed to import other stages."""

MAX_LINES = 400
EXEMPT_SIZE: set[str] = set()


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def module_name(path: Path) -> str:
    parts = list(path.with_suffix("").parts)
    parts = parts[len(parts) - 1 - parts[::-1].index(ROOT) :]  # from the package folder on
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> set[str]:
    """Every module ``path`` imports, absolute, anywhere in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module_name(path).rsplit(".", 0 if path.name == "__init__.py" else 1)[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module or ""
            found.add(name)
            found.update(f"{name}.{alias.name}" for alias in node.names)
    return found


def layer(name: str) -> str | None:
    """'videodirector_cli.stages.edit' -> 'stages'; None outside the package."""
    parts = name.split(".")
    return parts[1] if parts[0] == ROOT and len(parts) > 1 else None


def test_the_checker_sees_imports_inside_functions_and_type_checking(tmp_path):
    sample = tmp_path / "videodirector_cli" / "diffusion" / "sample.py"
    sample.parent.mkdir(parents=True)
    sample.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from videodirector_cli.stages.outcome import StageOutcome\n"
        "def f():\n    import videodirector_cli.cli.app\n    from . import editing\n"
    )
    found = imported(sample)
    assert "videodirector_cli.stages.outcome" in found and "videodirector_cli.cli.app" in found
    assert "videodirector_cli.diffusion.editing" in found


def test_the_package_has_the_layers_the_rules_name():
    present = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert set(FORBIDDEN) <= present


def test_layers_import_only_downwards():
    problems = []
    for path in modules():
        relative = str(path.relative_to(PACKAGE.parent))
        own = layer(module_name(path))
        if own not in FORBIDDEN or relative in EXEMPT_IMPORTS:
            continue
        wrong = sorted(n for n in imported(path) if layer(n) in FORBIDDEN[own])
        if wrong:
            problems.append(f"{relative} ({own}/) imports {', '.join(wrong)}")
    assert not problems, "\n".join(problems)


def test_no_stage_imports_another_stage():
    stages = PACKAGE / "stages"
    names = {p.stem for p in stages.glob("*.py")} - {"__init__"}
    stage_modules = names - STAGE_HELPERS
    assert {"init", "mask", "invert", "edit", "render", "evaluate", "status"} <= stage_modules
    problems = []
    for name in sorted(names - PIPELINE):
        path = stages / f"{name}.py"
        for other in imported(path):
            parts = [*other.split("."), ""][:3]
            if parts[:2] == [ROOT, "stages"] and parts[2] in stage_modules - {name}:
                problems.append(f"stages/{name}.py imports stages/{parts[2]}")
    assert not problems, problems


def test_no_module_is_over_400_lines():
    too_long = []
    for path in modules():
        relative = str(path.relative_to(PACKAGE.parent))
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES and relative not in EXEMPT_SIZE:
            too_long.append(f"{relative}: {lines} lines")
    assert not too_long, f"over {MAX_LINES} lines: {too_long}"


def test_exemptions_name_real_files():
    for relative in EXEMPT_IMPORTS | EXEMPT_SIZE:
        assert (PACKAGE.parent / relative).is_file(), relative
