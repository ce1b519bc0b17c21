"""STDG as the reference weighs it, and a guidance that cannot blow up (issue 11): the block
weights' combination, the size normalisation, the per-frame bound, what is recorded, and the
bounded guidance that editing replays."""

from __future__ import annotations

import functools
import math

import pytest
import torch
from _helpers_invert import PROMPT, ball_masks, small_inversion

from videodirector_cli.diffusion.editing import plan_edit, run_edit_path
from videodirector_cli.diffusion.null_text import initial_null, optimise_nulls
from videodirector_cli.diffusion.stdg import STDG, size_factor, weighted_layer_mean
from videodirector_cli.diffusion.stdg_bound import bound_guidance
from videodirector_cli.diffusion.trajectory import StoredInversion
from videodirector_cli.settings.edit import EditSettings
from videodirector_cli.settings.invert import NullTextSettings, STDGSettings

FRAMES, STEPS, CFG = 4, 3, 8.5


def _reference_formula(per_layer: list[float], layer_blocks: list[int], weights: list[float]):
    """additional_components.py, transcribed: each layer's loss times weight/100 (repeated
    per layer of its block), stacked, averaged, times 100."""
    scaled = [loss * (weights[b] / 100.0) for loss, b in zip(per_layer, layer_blocks, strict=True)]
    return 100.0 * sum(scaled) / len(scaled)


@pytest.mark.parametrize(
    "layer_blocks",
    [[0] * 6, [0] * 6 + [1] * 6, [0] * 2 + [1] * 5, [0] * 3 + [1] * 3],
    ids=["1 block", "2 blocks", "unequal counts", "keys (3 per block)"],
)
def test_block_weights_combine_as_the_reference_stacks_and_averages(layer_blocks):
    generator = torch.Generator().manual_seed(len(layer_blocks))
    losses = torch.rand(len(layer_blocks), generator=generator).tolist()
    weights = [20000.0, 10000.0]
    got = weighted_layer_mean([torch.tensor(x) for x in losses], [weights[b] for b in layer_blocks])
    assert float(got) == pytest.approx(_reference_formula(losses, layer_blocks, weights), rel=1e-6)
    first = [x for x, b in zip(losses, layer_blocks, strict=True) if b == 0]
    second = [x for x, b in zip(losses, layer_blocks, strict=True) if b == 1]
    if len(first) == len(second):  # equal counts: 10000 mean(block 1) + 5000 mean(block 2)
        expected = 10000 * sum(first) / len(first) + 5000 * sum(second) / len(second)
        assert float(got) == pytest.approx(expected, rel=1e-6)


def test_the_size_factor_is_one_at_the_reference_latent_and_scales_with_area():
    assert size_factor((64, 64)) == 1.0
    assert size_factor((16, 16)) == pytest.approx(1 / 16)
    assert size_factor((1, 4, 16, 32, 32)) == pytest.approx(1 / 4)


def setup():
    return small_inversion(FRAMES, STEPS)


def test_the_stdg_loss_is_the_reference_formula_of_its_own_layer_terms():
    model, schedule, cond, _, pivots = setup()
    settings = STDGSettings(block_weights=(3.0, 7.0))
    stdg = STDG(model.unet, settings, torch.from_numpy(ball_masks()), (8, 8))
    t = schedule.timesteps[1]
    reference = stdg.reference(pivots[STEPS - 1], t, cond)
    current = stdg.features(pivots[STEPS - 1] + 0.3, t, cond, "test")
    index = {b: i for i, b in enumerate(settings.blocks)}
    total = 0.0
    for layers, term, found, ref in (
        (stdg._temporal_layers, stdg._temporal_term, current.temporal, reference.temporal),
        (stdg._key_layers, stdg._key_term, current.keys, reference.keys),
    ):
        per_layer = [float(term(found[x.name], ref[x.name])) for x in layers]
        blocks = [index[x.block] for x in layers]
        total += _reference_formula(per_layer, blocks, list(settings.block_weights))
    assert float(stdg.loss(current, reference)) == pytest.approx(
        total * size_factor((8, 8)), rel=1e-5
    )


def test_the_bound_caps_each_frame_and_leaves_small_terms_alone():
    eps = torch.ones(1, 4, 3, 2, 2)
    grad = torch.zeros(1, 4, 3, 2, 2)
    grad[:, :, 0] = 100.0  # frame 0: huge
    grad[:, :, 1] = 0.01  # frame 1: small
    result = bound_guidance(grad, eps, noise_scale=0.5, scale=2.0, max_ratio=0.3)
    applied = 0.5 * result.guidance
    rms = applied.pow(2).mean(dim=(0, 1, 3, 4)).sqrt()
    assert rms[0] == pytest.approx(0.3, rel=1e-5)  # capped at max_ratio x RMS(eps)
    assert rms[1] == pytest.approx(0.5 * 2.0 * 0.01, rel=1e-5)  # untouched, scale applied
    assert rms[2] == 0
    assert result.bounded and result.ratio_max == pytest.approx(100.0)
    assert result.ratio_mean == pytest.approx((100.0 + 0.01) / 3, rel=1e-5)
    assert result.applied_mean == pytest.approx((0.3 + 0.01) / 3, rel=1e-5)
    calm = bound_guidance(grad[:, :, 1:], eps[:, :, 1:], 0.5, 1.0, 0.3)
    assert not calm.bounded and torch.equal(calm.guidance, grad[:, :, 1:])


@functools.lru_cache(maxsize=1)
def huge_run():
    """A deliberately huge block weight: the bound keeps every step finite and acts."""
    model, schedule, cond, empty, pivots = setup()
    settings = STDGSettings(block_weights=(1e12, 1e12), max_ratio=0.2)
    stdg = STDG(model.unet, settings, torch.from_numpy(ball_masks()), (8, 8))
    null = initial_null(empty, FRAMES, "per-frame")
    steps = optimise_nulls(
        model.unet,
        schedule,
        pivots,
        cond,
        NullTextSettings(inner_steps=2),
        CFG,
        null=null,
        stdg=stdg,
    )
    return steps


def test_a_huge_block_weight_gives_a_bounded_finite_step():
    model, schedule, cond, _, pivots = setup()
    steps = huge_run()
    assert all(torch.isfinite(s.next_latent).all() for s in steps)
    guided = [s for s in steps if s.guidance_ratio > 0]
    assert guided, "STDG never acted (z_t always at its pivot?)"
    for s in guided:
        assert s.bounded and s.guidance_ratio > 1e3
        assert s.applied_ratio == pytest.approx(0.2, rel=1e-4)
        eps_c = model.unet(s.latent, s.timestep, encoder_hidden_states=cond.expand(FRAMES, -1, -1))
        rms_eps = eps_c.sample.pow(2).mean(dim=(0, 1, 3, 4)).sqrt()
        applied = schedule.noise_scale(s.step) * s.guidance
        rms_a = applied.pow(2).mean(dim=(0, 1, 3, 4)).sqrt()
        assert torch.all(rms_a <= 0.2 * rms_eps * (1 + 1e-4))
    _, _, _, empty, _ = setup()
    plain = optimise_nulls(
        model.unet,
        schedule,
        pivots,
        cond,
        NullTextSettings(inner_steps=2),
        CFG,
        null=initial_null(empty, FRAMES, "per-frame"),
    )
    bounded, unguided = _rms_off_pivots(steps, pivots), _rms_off_pivots(plain, pivots)
    print(f"RMS distance from the pivots: bounded STDG {bounded:.4g}, no STDG {unguided:.4g}")
    assert math.isfinite(bounded) and bounded < 1.5 * unguided


def _rms_off_pivots(steps, pivots) -> float:
    return max(
        float((s.next_latent - pivots[STEPS - s.step - 1]).pow(2).mean().sqrt()) for s in steps
    )


def test_the_edit_replays_the_bounded_guidance():
    """Editing with the source prompt and the stored (bounded) guidance retraces the
    optimised trajectory; without the guidance it does not."""
    model, schedule, _, _, pivots = setup()
    steps = huge_run()
    stored = StoredInversion.from_steps("x", list(schedule.timesteps), pivots, steps)
    plan = plan_edit(model, PROMPT, PROMPT, EditSettings(), CFG)
    run = run_edit_path(model, stored, plan)
    assert (run.latents - stored.reconstruction).abs().max() <= 1e-4
    unguided = StoredInversion.from_steps(
        "y",
        list(schedule.timesteps),
        pivots,
        [type(s)(**{**s.__dict__, "guidance": None}) for s in steps],
    )
    off = run_edit_path(model, unguided, plan)
    assert (off.latents - stored.reconstruction).abs().max() > 1e-3


def test_with_the_size_factor_g_per_element_hardly_depends_on_the_latent_size():
    """The same content at 8x8 and 32x32 latents (nearest-upsampled): the raw loss is a mean
    over positions, so without the factor G per element would shrink about 16x; with it, it
    stays within 2x (the UNet's convolutions see the content at another scale)."""
    model, _, cond, _, _ = setup()
    generator = torch.Generator().manual_seed(0)
    base = torch.randn(1, 4, FRAMES, 8, 8, generator=generator)
    drift = 0.3 * torch.randn(1, 4, FRAMES, 8, 8, generator=generator)
    mask = torch.zeros(FRAMES, 8, 8, dtype=torch.bool)
    mask[:, 2:6, 2:6] = True
    rms = {}
    for k in (1, 4):

        def up(x, k=k):
            return x.repeat_interleave(k, -1).repeat_interleave(k, -2)

        stdg = STDG(model.unet, STDGSettings(), up(mask), (8 * k, 8 * k))
        grad, _ = stdg.guidance(up(base + drift), up(base), 500, cond)
        rms[k] = float(grad.pow(2).mean().sqrt())
    print(f"RMS(G) per element: 8x8 {rms[1]:.4g}, 32x32 {rms[4]:.4g}")
    assert 0.5 < rms[4] / rms[1] < 2.0
