"""`vdir invert`'s STDG options and the negative prompt as a user meets them (issue 11): the
bound's record in --json, the manifest, inversion.json and `vdir status`; its warning; the
negative prompt in the key; and every bad value refused before anything is written."""

from __future__ import annotations

import json

import pytest
from _helpers_invert import fast_model_loader, make_invert_project
from typer.testing import CliRunner

from videodirector_cli.cli.app import app
from videodirector_cli.project.store import Project
from videodirector_cli.stages.inversion_files import InversionFiles

FAST = ["--model", "tiny", "--steps", "3", "--inner-steps", "1", "--no-report"]


@pytest.fixture(autouse=True)
def _fast_models(monkeypatch):
    monkeypatch.setattr("videodirector_cli.diffusion.loading.load_model", fast_model_loader)


def _invoke(root, *args):
    return CliRunner().invoke(app, ["invert", "--project", str(root), *args])


def test_a_huge_weight_is_bounded_recorded_everywhere_and_warned_about(tmp_path):
    root = tmp_path / "p"
    make_invert_project(root, masks=True)
    result = _invoke(
        root, *FAST, "--block-weights", "1e12,1e12", "--stdg-max-ratio", "0.3", "--json"
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["stdg_bounded"][0] is False  # step 0 starts at the pivot: no guidance
    assert all(data["stdg_bounded"][1:]) and min(data["stdg_ratios"][1:]) > 1e3
    assert data["stdg_applied_mean"] == pytest.approx(0.3 * 2 / 3, rel=1e-3)
    assert data["stdg_bounded_steps"] == 2
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "2 of 3 steps" in warnings[0]
    assert "--stdg-scale" in warnings[0] and data["stdg_warning"] in warnings[0]
    project = Project.open(root)
    record = project.manifest.inversions[data["inversion"]]
    assert record.metrics["stdg_bounded"] == data["stdg_bounded"]
    assert record.metrics["stdg_ratio_max"] == pytest.approx(max(data["stdg_ratios"]))
    files = InversionFiles(project.paths.inversion_dir(data["inversion"]))
    info = json.loads(files.info_path.read_text())
    assert info["stdg"]["bounded"] == data["stdg_bounded"]
    assert files.load_step(2).bounded and files.load_step(2).applied_ratio == pytest.approx(0.3)
    status = CliRunner().invoke(app, ["status", "--project", str(root)])
    assert "stdg_bounded_steps=2" in status.stdout and "stdg_applied_mean=" in status.stdout


def test_the_default_bound_does_not_act_or_warn_at_the_default_weights(tmp_path):
    root = tmp_path / "p"
    make_invert_project(root, masks=True)
    result = _invoke(root, *FAST, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["stdg_warning"] is None and "warning:" not in result.stderr
    assert data["stdg_applied_mean"] > 0  # STDG acted


def test_a_changed_negative_prompt_makes_a_new_inversion(tmp_path):
    root = tmp_path / "p"
    make_invert_project(root)
    first = _invoke(root, *FAST, "--no-stdg", "--json")
    second = _invoke(root, *FAST, "--no-stdg", "--negative-prompt", "blurry", "--json")
    assert first.exit_code == 0 and second.exit_code == 0, second.output
    one, two = json.loads(first.stdout)["inversion"], json.loads(second.stdout)["inversion"]
    assert one != two
    project = Project.open(root)
    assert project.manifest.inversions[two].params.settings.negative_prompt == "blurry"
    nulls = [InversionFiles(project.paths.inversion_dir(k)).load_step(0).null for k in (one, two)]
    assert not nulls[0].equal(nulls[1])  # the optimisation started from another null


@pytest.mark.parametrize(
    "args",
    [
        ["--stdg-scale", "-1"],
        ["--stdg-scale", "nan"],
        ["--stdg-scale", "inf"],
        ["--stdg-max-ratio", "-0.5"],
        ["--stdg-max-ratio", "nan"],
        ["--stdg-max-ratio", "inf"],
        ["--negative-prompt", "word " * 80],
    ],
    ids=lambda a: " ".join(a)[:30],
)
def test_bad_stdg_values_and_a_long_negative_prompt_are_refused(tmp_path, args):
    root = tmp_path / "p"
    make_invert_project(root)
    before = (root / "manifest.json").read_text()
    result = _invoke(root, *FAST, *args)
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) <= 2  # the message (and its hint)
    assert "Traceback" not in result.output
    assert (root / "manifest.json").read_text() == before
    assert not (root / "inversions").exists()
