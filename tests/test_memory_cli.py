"""`--memory` and `--plan` at the command line: the plan a run applies never changes its result
or its key, `--plan` estimates without loading or writing anything, bad values are usage errors."""

from __future__ import annotations

import json

import pytest
import torch
from _helpers_invert import fast_model_loader, make_invert_project
from typer.testing import CliRunner

from videodirector_cli.cli.app import app
from videodirector_cli.project.store import Project
from videodirector_cli.stages.inversion_files import InversionFiles

FAST = ["--model", "tiny", "--steps", "2", "--inner-steps", "1", "--no-report"]


@pytest.fixture(autouse=True)
def _fast_models(monkeypatch):
    monkeypatch.setattr("videodirector_cli.diffusion.loading.load_model", fast_model_loader)


def _vdir(root, *args):
    return CliRunner().invoke(app, [args[0], "--project", str(root), *args[1:]])


def _snapshot(root):
    return sorted((p.relative_to(root), p.stat().st_size) for p in root.rglob("*") if p.is_file())


def test_invert_plan_estimates_every_plan_and_writes_nothing(tmp_path):
    root = tmp_path / "p"
    make_invert_project(root, masks=True)
    before = _snapshot(root)
    result = _vdir(root, "invert", *FAST, "--plan", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["plan"] is True and data["stage"] == "invert"
    assert set(data["plans"]) == {"fast", "low", "lowest"}
    assert data["chosen"] == "fast"  # on the CPU nothing is fitted
    est = data["estimate"]
    assert est["architecture"] == "tiny" and est["frames"] == 4 and est["steps"] == 2
    assert est["peak_bytes"] > 0 and est["work"]["total"] > 0
    # the leaner plans hold less at their peak
    peaks = {name: plan["peak_bytes"] for name, plan in data["plans"].items()}
    assert peaks["lowest"] < peaks["fast"]
    assert _snapshot(root) == before  # nothing loaded, nothing written
    human = _vdir(root, "invert", *FAST, "--plan", "--gpu", "rtx4090")
    assert human.exit_code == 0 and "peak accelerator memory" in human.stderr
    assert "RTX 4090" in human.stderr and "--memory lowest" in human.stderr


def test_memory_plan_is_not_part_of_the_inversion_and_changes_nothing(tmp_path):
    plain, lean = tmp_path / "plain", tmp_path / "lean"
    for root in (plain, lean):
        make_invert_project(root, masks=True)
    assert _vdir(plain, "invert", *FAST).exit_code == 0
    result = _vdir(lean, "invert", *FAST, "--memory", "lowest", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["memory"] == "lowest"
    keys = [Project.open(r).manifest.current_inversion for r in (plain, lean)]
    assert keys[0] == keys[1]
    for step in range(2):
        a = InversionFiles(plain / "inversions" / keys[0]).load_step(step)
        b = InversionFiles(lean / "inversions" / keys[1]).load_step(step)
        # a whole step in float32: checkpointing recomputes the forward for the backward and
        # Adam's first update divides by |g|, so rounding of 1e-7 in a gradient reaches about
        # 2e-5 in the latents (each option alone is equal within 1e-5: tests/test_memory.py)
        assert torch.allclose(a.null, b.null, rtol=1e-5, atol=1e-5)
        assert torch.allclose(a.next_latent, b.next_latent, rtol=1e-4, atol=1e-4)
    again = _vdir(plain, "invert", *FAST, "--memory", "low", "--json")
    assert again.exit_code == 0 and json.loads(again.stdout)["up_to_date"] is True


def test_edit_plan_after_an_inversion(tmp_path):
    root = tmp_path / "p"
    make_invert_project(root, masks=True)
    assert _vdir(root, "invert", *FAST).exit_code == 0
    before = _snapshot(root)
    result = _vdir(root, "edit", "a red cube rolling", "--plan", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["stage"] == "edit" and data["estimate"]["work"]["per_step"] == 4
    assert data["estimate"]["steps"] == 2
    assert _snapshot(root) == before


@pytest.mark.parametrize(
    "args, words",
    [
        (["--memory", "tiny"], "unknown --memory"),
        (["--plan", "--gpu", "abacus"], "unknown GPU class"),
        (["--plan", "--device", "cuda:7"], "cuda"),
    ],
)
def test_bad_memory_options_are_refused_before_anything_is_written(tmp_path, args, words):
    root = tmp_path / "p"
    make_invert_project(root)
    before = _snapshot(root)
    result = _vdir(root, "invert", *FAST, *args)
    assert result.exit_code == 2, result.output
    assert words in result.stderr and len(result.stderr.strip().splitlines()) <= 2
    assert _snapshot(root) == before


def test_plan_outside_a_project(tmp_path):
    result = _vdir(tmp_path, "invert", "--plan")
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "project" in result.stderr
