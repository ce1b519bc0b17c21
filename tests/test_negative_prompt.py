"""`vdir invert --method negative-prompt`: the fast inversion (the source prompt as the null).

Its guided prediction is the conditional one for every w, so it must equal a null-text run
started from the source prompt with no updates, bit for bit, while skipping the unconditional
pass; it must not change the key of a default inversion, and `vdir edit` must work from it.
"""

from __future__ import annotations

import json

import pytest
import torch
from _helpers_invert import fast_model_loader, make_invert_project
from typer.testing import CliRunner

from videodirector_cli.cli.app import app
from videodirector_cli.settings.invert import InvertSettings, NullTextSettings

FAST = ["--model", "tiny", "--steps", "3", "--no-report"]


@pytest.fixture(autouse=True)
def _fast_models(monkeypatch):
    monkeypatch.setattr("videodirector_cli.diffusion.loading.load_model", fast_model_loader)


def _vdir(root, *args):
    return CliRunner().invoke(app, [args[0], "--project", str(root), *args[1:]])


def _trajectory(model, null_is_prompt: bool):
    from videodirector_cli.diffusion.inversion import ddim_invert
    from videodirector_cli.diffusion.null_text import initial_null, optimise_nulls
    from videodirector_cli.diffusion.passes import PassCounter
    from videodirector_cli.diffusion.prompts import encode_prompt
    from videodirector_cli.diffusion.schedule import Schedule

    torch.manual_seed(0)
    clean = torch.randn(1, 4, 3, 8, 8)
    schedule = Schedule.from_scheduler(model.scheduler, 3)
    cond = encode_prompt(model, "a red ball rolling").to(torch.float32)
    pivots = ddim_invert(model.unet, schedule, clean, cond)
    counter = PassCounter()
    steps = optimise_nulls(
        model.unet,
        schedule,
        pivots,
        cond,
        NullTextSettings(inner_steps=0),
        8.5,
        null=initial_null(cond, 3, "shared"),
        counter=counter,
        null_is_prompt=null_is_prompt,
    )
    return steps, counter


def test_negative_prompt_equals_a_null_fixed_at_the_prompt_without_the_unconditional_pass(
    tiny_model,
):
    fast, fast_counter = _trajectory(tiny_model, null_is_prompt=True)
    slow, slow_counter = _trajectory(tiny_model, null_is_prompt=False)
    for a, b in zip(fast, slow, strict=True):
        assert torch.equal(a.next_latent, b.next_latent)
        assert torch.equal(a.null, b.null)
        assert a.iterations == 0
    assert fast_counter.by_purpose.get("null-text", 0.0) == 0.0
    assert slow_counter.by_purpose["null-text"] == pytest.approx(3.0)
    assert fast_counter.forward_equivalents == pytest.approx(slow_counter.forward_equivalents - 3.0)


def test_default_key_unchanged_and_unused_settings_do_not_shape_the_method():
    default = InvertSettings().shaping()
    assert "method" not in default and "null_text" in default  # keys made before stay valid
    fast = InvertSettings(method="negative-prompt").shaping()
    assert fast["method"] == "negative-prompt"
    assert "null_text" not in fast and "negative_prompt" not in fast
    other = InvertSettings(
        method="negative-prompt",
        null_text=NullTextSettings(inner_steps=3),
        negative_prompt="blurry",
    ).shaping()
    assert other == fast


def test_cli_negative_prompt_inversion_then_edit(tmp_path):
    root = tmp_path / "p"
    make_invert_project(root, masks=True)
    fast = _vdir(root, "invert", *FAST, "--method", "negative-prompt", "--json")
    assert fast.exit_code == 0, fast.output
    fast_data = json.loads(fast.stdout)
    assert fast_data["iterations"] == [0, 0, 0]
    full = _vdir(root, "invert", *FAST, "--inner-steps", "2", "--json")
    assert full.exit_code == 0, full.output
    full_data = json.loads(full.stdout)
    assert full_data["inversion"] != fast_data["inversion"]  # two inversions side by side
    fast_work = fast_data["passes"]["forward_equivalents"]
    assert fast_work < full_data["passes"]["forward_equivalents"]
    edit = _vdir(
        root,
        "edit",
        "a blue ball rolling",
        "--name",
        "blue",
        "--inversion",
        fast_data["inversion"],
        "--json",
    )
    assert edit.exit_code == 0, edit.output
    assert json.loads(edit.stdout)["inversion"] == fast_data["inversion"]


def test_plan_counts_no_null_text_work_for_the_negative_prompt_method(tmp_path):
    root = tmp_path / "p"
    make_invert_project(root, masks=True)
    runs = {}
    for method in ("null-text", "negative-prompt"):
        result = _vdir(root, "invert", *FAST, "--method", method, "--plan", "--json")
        assert result.exit_code == 0, result.output
        runs[method] = json.loads(result.stdout)["estimate"]["work"]
    assert runs["negative-prompt"]["by_purpose"]["null-text"] == 0.0
    assert runs["null-text"]["by_purpose"]["null-text"] > 0.0
    assert runs["negative-prompt"]["upper_bound"] is False
    assert runs["negative-prompt"]["per_step"] < runs["null-text"]["per_step"]


def test_unknown_method_is_a_usage_error(tmp_path):
    root = tmp_path / "p"
    make_invert_project(root)
    result = _vdir(root, "invert", *FAST, "--method", "direct")
    assert result.exit_code == 2
    assert not (root / "inversions").exists() or not any((root / "inversions").iterdir())
