"""FLOP-based pass costs: measured ratios equal FlopCounterMode's own count of the library's
calls, the real SD1.5 + AnimateDiff v3 shape gives a backward of about one forward (weights
frozen), the PassCounter charges exactly those ratios, and the shipped cache is current."""

from __future__ import annotations

import json

import pytest
import torch
from _helpers_invert import PROMPT, ball_masks, tiny_model
from torch.utils.flop_counter import FlopCounterMode

from videodirector_cli.diffusion import flops
from videodirector_cli.diffusion.architecture import SD15_ANIMATEDIFF, Architecture, named
from videodirector_cli.diffusion.inversion import ddim_invert
from videodirector_cli.diffusion.null_text import initial_null, optimise_nulls
from videodirector_cli.diffusion.passes import PassCounter
from videodirector_cli.diffusion.prompts import encode_prompt
from videodirector_cli.diffusion.run_work import invert_work
from videodirector_cli.diffusion.schedule import Schedule
from videodirector_cli.diffusion.stdg import STDG
from videodirector_cli.diffusion.unet_call import predict_noise
from videodirector_cli.settings.invert import InvertSettings, NullTextSettings, STDGSettings

FRAMES, LATENT = 4, (8, 8)


def test_tiny_ratios_equal_flopcountermode_around_the_library_calls():
    """Count by hand, with FlopCounterMode around predict_noise and the real STDG object's
    partial forward on the meta copy, and compare with measure_costs."""
    arch = named("tiny")
    unet = arch.build_unet()
    latent = torch.empty((1, 4, FRAMES, *LATENT), device="meta")
    context = torch.empty((FRAMES, 77, arch.context_dim), device="meta")

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        predict_noise(unet, latent, 500, context)
    forward = counter.get_total_flops()

    null = context.clone().requires_grad_(True)
    counter = FlopCounterMode(display=False)
    with counter:
        eps = predict_noise(unet, latent, 500, null)
        before = counter.get_total_flops()
        eps.sum().backward()
    null_backward = counter.get_total_flops() - before

    stdg = STDG(unet, STDGSettings(zeta_f=0.5), None, LATENT)  # motion and appearance terms
    assert stdg.uses_temporal and stdg.uses_keys
    with torch.no_grad():  # measures (and caches) its partial-forward fraction: not counted below
        stdg.features(latent, 500, context[:1], "stdg-reference")
    current = latent.clone().requires_grad_(True)
    counter = FlopCounterMode(display=False)
    with counter:
        features = stdg.features(current, 500, context[:1], "stdg")
        stdg_forward = counter.get_total_flops()
        recorded = [*features.temporal.values(), *features.keys.values()]
        sum(x.float().sum() for x in recorded).backward()
    stdg_backward = counter.get_total_flops() - stdg_forward

    costs = flops.measure_costs(arch, FRAMES, LATENT)
    assert costs.forward_flop == forward
    assert costs.null_text_backward == pytest.approx(null_backward / forward, rel=1e-9)
    assert costs.stdg_forward == pytest.approx(stdg_forward / forward, rel=1e-9)
    assert costs.stdg_backward == pytest.approx(stdg_backward / forward, rel=1e-9)
    assert costs.stdg_forward == pytest.approx(stdg.last_fraction, rel=1e-9)
    # frozen weights: a backward w.r.t. the input only costs about one forward, not two
    assert 0.9 < costs.null_text_backward < 1.3


def test_real_shape_ratios_from_the_shipped_cache():
    """SD1.5 + AnimateDiff v3 at 16 x 512 x 512: forward 17.67 TFLOP, null-text backward about
    1.1 forwards (1.06 with the math attention kernel; the fused kernels CUDA runs recompute
    the attention map in the backward), STDG's partial forward 0.733 and its backward 0.81."""
    costs = flops.cached_costs(named(SD15_ANIMATEDIFF), 16, (64, 64))
    print(
        f"forward {costs.forward_flop / 1e12:.2f} TFLOP, null-text backward "
        f"{costs.null_text_backward:.3f}, STDG forward {costs.stdg_forward:.3f}, "
        f"backward {costs.stdg_backward:.3f}"
    )
    assert costs.forward_flop / 1e12 == pytest.approx(17.675, abs=0.01)
    assert costs.null_text_backward == pytest.approx(1.06, abs=0.06)
    assert costs.stdg_forward == pytest.approx(0.733, abs=0.002)
    assert costs.stdg_backward == pytest.approx(0.78, abs=0.05)
    checkpointed = flops.cached_costs(named(SD15_ANIMATEDIFF), 16, (64, 64), checkpointing=True)
    assert checkpointed.forward_flop == costs.forward_flop
    assert checkpointed.null_text_backward > costs.null_text_backward + 0.3  # the recompute


def test_the_counter_charges_the_measured_ratios_in_a_real_optimisation():
    """optimise_nulls with STDG on the tiny model: the counter's totals are the estimate's
    invert_work for the same steps, purpose by purpose (the same unit everywhere)."""
    model = tiny_model()
    steps, inner = 2, 2
    schedule = Schedule.from_scheduler(model.scheduler, steps)
    cond, empty = encode_prompt(model, PROMPT), encode_prompt(model, "")
    clean = 0.8 * torch.randn(1, 4, FRAMES, *LATENT, generator=torch.Generator().manual_seed(1))
    pivots = ddim_invert(model.unet, schedule, clean, cond)
    stdg = STDG(model.unet, STDGSettings(), torch.from_numpy(ball_masks()), LATENT)
    counter = PassCounter(costs=flops.cost_model(model.unet, FRAMES, LATENT, stdg))
    stdg.counter = counter
    config = NullTextSettings(inner_steps=inner, early_stop=0.0, early_stop_slope=0.0)
    optimise_nulls(
        model.unet,
        schedule,
        pivots,
        cond,
        config,
        InvertSettings().guidance_scale,
        null=initial_null(empty, FRAMES, "per-frame"),
        stdg=stdg,
        counter=counter,
    )
    passes = flops.StdgPasses.of(stdg)
    assert passes == flops.StdgPasses.from_config(STDGSettings(), has_mask=True)
    assert flops.StdgPasses.from_config(STDGSettings(), has_mask=False) == flops.StdgPasses(
        keys=False  # no mask: only eta_f and zeta_f (0) remain
    )
    costs = flops.measure_costs(named("tiny"), FRAMES, LATENT, passes)
    expected = invert_work(costs, steps, inner, stdg=True, report=False)["by_purpose"]
    for purpose in ("conditional", "null-text", "stdg-reference", "stdg"):
        assert counter.by_purpose[purpose] == pytest.approx(expected[purpose], abs=1e-3)
    assert counter.by_purpose["null-text"] == pytest.approx(
        steps * (inner + 1 + inner * costs.null_text_backward)
    )
    assert counter.as_dict()["backward_costs"]["source"].startswith("measured: ")


def test_the_loaded_tiny_model_and_the_named_architecture_agree():
    model = tiny_model()
    assert Architecture.from_model(model).fingerprint() == named("tiny").fingerprint()
    real = sum(p.numel() for p in model.unet.parameters())
    assert real == sum(p.numel() for p in named("tiny").build_unet().parameters())


@pytest.mark.slow
def test_the_shipped_cost_cache_matches_a_fresh_measurement():
    stored = json.loads(flops.COSTS_FILE.read_text())["costs"]
    arch = named(SD15_ANIMATEDIFF)
    assert len(stored) == 2 * len(flops.SHIPPED_SHAPES)
    for entry in stored.values():
        fresh = flops._measure(
            arch,
            entry["frames"],
            tuple(entry["latent_hw"]),
            flops.StdgPasses(),
            entry["checkpointing"],
        )
        for name in ("forward_flop", "null_text_backward_flop", "stdg_forward_flop"):
            assert getattr(fresh, name) == entry[name], name
        assert fresh.stdg_backward_flop == entry["stdg_backward_flop"]


def test_a_loaded_config_with_paths_is_plain_data():
    """A model loaded from a folder carries paths in its config (diffusers' _name_or_path)."""
    from pathlib import Path

    from videodirector_cli.diffusion.architecture import _plain

    config = {"_name_or_path": Path("/x"), "sample_size": 64, "blocks": (1, 2), "at": Path("a")}
    assert _plain(config) == {"sample_size": 64, "blocks": [1, 2], "at": "a"}
