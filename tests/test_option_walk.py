"""Every numeric option of every command, walked from the click command objects (no hand
list): 0, a negative, NaN, inf and a huge value are either refused at the command-line boundary
(exit 2, one line naming the option, nothing written) or accepted where the value is
legitimately valid, each acceptance stated below with its reason.

The stages are replaced by stand-ins that do what every stage does first (``request.check()``,
the contract of docs/architecture.md) and then stop, so the walk measures the boundary, not
the work; the stand-ins record that they were reached."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from _helpers_faults import small_project, snapshot, vdir

from videodirector_cli.cli.app import app
from videodirector_cli.stages.outcome import StageOutcome

VALUES = {"zero": "0", "negative": "-1", "nan": "nan", "inf": "inf", "huge": str(10**30)}

ACCEPTED: dict[tuple[str, str], dict[str, str]] = {
    ("invert", "--inner-steps"): {"zero": "0 Adam updates: plain DDIM inversion, a valid choice"},
    ("invert", "--seed"): {"zero": "seed 0 is a seed (the default)"},
    ("invert", "--early-stop"): {"zero": "0 turns early stopping off"},
    ("invert", "--early-stop-slope"): {"zero": "0 keeps the threshold constant"},
    ("invert", "--eta-f"): {
        "zero": "a zero STDG weight switches that term off",
        "huge": "no upper limit: the STDG bound (--stdg-max-ratio) caps the guidance applied",
    },
    ("invert", "--eta-b"): {
        "zero": "a zero STDG weight switches that term off",
        "huge": "no upper limit: the STDG bound (--stdg-max-ratio) caps the guidance applied",
    },
    ("invert", "--zeta-f"): {
        "zero": "a zero STDG weight switches that term off (the default)",
        "huge": "no upper limit: the STDG bound (--stdg-max-ratio) caps the guidance applied",
    },
    ("invert", "--zeta-b"): {
        "zero": "a zero STDG weight switches that term off",
        "huge": "no upper limit: the STDG bound (--stdg-max-ratio) caps the guidance applied",
    },
    ("invert", "--stdg-scale"): {
        "zero": "scale 0: STDG measured but not applied",
        "huge": "no upper limit: the STDG bound (--stdg-max-ratio) caps the guidance applied",
    },
    ("invert", "--stdg-max-ratio"): {
        "zero": "ratio 0: the bound removes all guidance",
        "huge": "a ratio this large switches the bound off (the unbounded guidance)",
    },
    ("edit", "--tau-s"): {"zero": "self-attention control for no step: a valid ablation"},
    ("edit", "--tau-c"): {"zero": "cross-attention control for no step: a valid ablation"},
    ("edit", "--blend-dilate"): {"zero": "no dilation of the blend mask"},
    ("eval", "--dilate"): {"zero": "no dilation of the mask"},
    ("invert", "--window-overlap"): {"zero": "no overlap: windows side by side (seams likelier)"},
    ("report", "--dilate"): {"zero": "no dilation of the mask (as vdir eval)"},
    ("render", "--crf"): {"zero": "crf 0 is lossless H.264"},
    ("mask", "--frame"): {"zero": "frame 0 is the first frame (the default)"},
    ("demo", "--inner-steps"): {"zero": "0 Adam updates: plain DDIM inversion"},
}
"""(command, option) -> {value name: why it is right to accept it}; every other combination
must be refused."""


def numeric_options() -> list[tuple[str, str, str]]:
    """(command, option flag, 'int'/'float') for every numeric option, from the click objects."""
    group = typer.main.get_command(app)
    commands = group.commands  # type: ignore[attr-defined]  (a click group, however vendored)
    found = []
    for name, command in sorted(commands.items()):
        for param in command.params:
            if param.param_type_name != "option" or getattr(param, "is_flag", False):
                continue
            kind = _kind(param)
            if kind is not None:
                found.append((name, param.opts[0], kind))
    return found


def _kind(param) -> str | None:
    """'int', 'float' or None, for click's parameter types and typer's own (0.29+)."""
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is not None:
        annotation = descriptor.annotation
        return {int: "int", float: "float"}.get(annotation)
    name = param.type.name  # click's: 'integer', 'float', 'integer range', 'float range'
    return "int" if name.startswith("integer") else "float" if name.startswith("float") else None


OPTIONS = numeric_options()


def test_the_walk_covers_every_command_with_numbers() -> None:
    commands = {command for command, _, _ in OPTIONS}
    assert {"init", "invert", "edit", "eval", "render", "demo", "mask"} <= commands
    assert len(OPTIONS) >= 24, OPTIONS
    for command, option in ACCEPTED:
        assert any(c == command and o == option for c, o, _ in OPTIONS), (command, option)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return small_project(tmp_path_factory.mktemp("walk"))


@pytest.fixture
def stand_ins(monkeypatch) -> list[str]:
    """Each stage replaced by its first act: the request's check."""
    reached: list[str] = []

    def stand_in(stage: str):
        def run(*args, **kwargs):
            request = next(a for a in args if hasattr(a, "check") and hasattr(a, "model_dump"))
            request.check()
            reached.append(stage)
            return StageOutcome({"stage": stage}, "")

        return run

    for module, function in (
        ("init", "run_init"),
        ("mask", "run_mask"),
        ("invert", "run_invert"),
        ("edit", "run_edit"),
        ("render", "run_render"),
        ("evaluate", "run_eval"),
        ("report", "run_report"),
        ("demo", "run_demo"),
    ):
        monkeypatch.setattr(f"videodirector_cli.stages.{module}.{function}", stand_in(module))
    return reached


def _base(command: str, project: Path, tmp_path: Path) -> list[str]:
    """The arguments a command needs besides the option under test."""
    video = project.parent / "p.mp4"
    return {
        "init": [str(video), str(tmp_path / "new")],
        "mask": ["--point", "10,10", "-p", str(project)],
        "edit": ["a tiger", "-p", str(project)],
        "demo": [str(tmp_path / "demo")],
    }.get(command, ["-p", str(project)])


@pytest.mark.parametrize(("command", "option", "kind"), OPTIONS)
def test_every_numeric_option_with_every_bad_number(
    command: str, option: str, kind: str, project: Path, tmp_path: Path, stand_ins
) -> None:
    before = snapshot(project)
    accepted = ACCEPTED.get((command, option), {})
    for value_name, value in VALUES.items():
        stand_ins.clear()
        result = vdir(command, *_base(command, project, tmp_path), option, value)
        if value_name in accepted:
            assert result.exit_code == 0, (option, value, result.output)
            assert stand_ins, "the stage was not reached"
            continue
        assert result.exit_code == 2, (command, option, value, result.output)
        assert not stand_ins, f"{command} {option} {value} reached the stage"
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        if lines and lines[0].startswith("vdir: error: "):
            assert len(lines) == 1 and option in lines[0], lines
        else:  # click refused it as not a number of the option's kind ('nan' for an int)
            assert kind == "int" and value_name in ("nan", "inf"), result.output
            text = " ".join(result.output.replace("│", " ").split())
            assert f"Invalid value for '{option}'" in text and "integer" in text, text
        assert not (tmp_path / "new").exists() and not (tmp_path / "demo").exists()
    assert snapshot(project) == before


TEXT_NUMBERS = [
    ("init", ["x.mp4", "new"], "--size", ["nan", "0", "-64", "inf", str(10**30)]),
    ("init", ["x.mp4", "new"], "--start", ["nan", "-1", "infs", "-2s"]),
    ("invert", [], "--block-weights", ["nan,1", "inf,1", "-1,1"]),
    ("edit", ["a tiger"], "--reweight", ["tiger=nan", "tiger=inf", "tiger=-1"]),
    ("mask", [], "--box", ["nan,0,8,8", "0,0,inf,8", f"0,0,{10**30},8"]),
    ("mask", [], "--point", ["nan,1", "1,inf", f"{10**30},1"]),
]
"""Options that carry numbers inside text (their click type is a string, so the walk above
cannot find them by type): each has its own parser, checked here with the same bad numbers."""


@pytest.mark.parametrize(("command", "base", "option", "values"), TEXT_NUMBERS)
def test_numbers_inside_text_options(
    command: str, base: list[str], option: str, values: list[str], tmp_path: Path, stand_ins
) -> None:
    for value in values:
        args = [a if a != "new" else str(tmp_path / "new") for a in base]
        where = [] if command == "init" else ["-p", str(tmp_path)]
        result = vdir(command, *args, option, value, *where)
        assert result.exit_code == 2, (option, value, result.output)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("vdir: error: ") and option in lines[0]
        assert not stand_ins and not (tmp_path / "new").exists()
