"""The loops through temporal windows on the tiny model: null-text optimisation (one window's
graph at a time, the gradient of the whole bound), STDG per window with per-frame masks, and
short clips exactly as without windows."""

from __future__ import annotations

import functools

import numpy as np
import torch
from _helpers_invert import PROMPT, small_inversion

from videodirector_cli.diffusion.null_text import (
    _StepProblem,
    _windowed_updates,
    initial_null,
    optimise_nulls,
)
from videodirector_cli.diffusion.passes import PassCounter
from videodirector_cli.diffusion.prompts import encode_prompt
from videodirector_cli.diffusion.schedule import Schedule
from videodirector_cli.diffusion.stdg import STDG
from videodirector_cli.diffusion.unet_call import predict_noise
from videodirector_cli.diffusion.windows import plan_windows, slice_embeddings, windowed_noise
from videodirector_cli.settings.invert import NullTextSettings, STDGSettings

FRAMES, STEPS, CFG = 20, 2, 7.5
PLAN = plan_windows(FRAMES, 8, 2)  # windows at 0, 6, 12


@functools.lru_cache(maxsize=1)
def long_inversion():
    return small_inversion(FRAMES, STEPS)


def _masks(frames: int) -> torch.Tensor:
    """A block that moves one pixel a frame (16 x 16 frames: the tiny model's 8 x 8 latents)."""
    masks = np.zeros((frames, 16, 16), dtype=bool)
    for f in range(frames):
        masks[f, 4:12, (f % 8) : (f % 8) + 8] = True
    return torch.from_numpy(masks)


def test_a_short_clip_optimises_exactly_as_without_windows():
    model, schedule, cond, empty, pivots = small_inversion(4, 2)
    config = NullTextSettings(inner_steps=2, learning_rate=0.1)
    runs = [
        optimise_nulls(
            model.unet,
            schedule,
            pivots,
            cond,
            config,
            CFG,
            null=initial_null(empty, 4, "per-frame"),
            windows=plan,
        )
        for plan in (None, plan_windows(4, 16, 4))
    ]
    for a, b in zip(*runs, strict=True):
        assert torch.equal(a.null, b.null) and torch.equal(a.next_latent, b.next_latent)
        assert a.loss == b.loss and a.iterations == b.iterations


def test_per_window_backwards_add_up_to_the_gradient_of_the_whole_bound():
    """One update: the null's gradient after the per-window backwards equals the gradient of
    sum_k w_k * (stepped_k - target)^2 / N built in ONE graph over all windows."""
    model, schedule, cond, empty, pivots = long_inversion()
    current, target = pivots[STEPS], pivots[STEPS - 1]
    t = schedule.timesteps[0]
    with torch.no_grad():
        eps_cond = windowed_noise(model.unet, current, t, cond, PLAN)
    null = initial_null(empty, FRAMES, "per-frame").requires_grad_(True)
    problem = _StepProblem(model.unet, schedule, 0, current, target, eps_cond, None, CFG, None)
    seen: list[torch.Tensor] = []

    class Recorder:
        def zero_grad(self, set_to_none=True):
            null.grad = None

        def step(self):
            assert null.grad is not None
            seen.append(null.grad.clone())

    config = NullTextSettings(inner_steps=1, early_stop=0.0, early_stop_slope=0.0)
    _windowed_updates(problem, null, Recorder(), config, PLAN)
    assert len(seen) == 1
    whole = initial_null(empty, FRAMES, "per-frame").requires_grad_(True)
    weights = PLAN.weights()
    bound = torch.zeros(())
    for index, part in enumerate(PLAN.slices()):
        eps_u = predict_noise(
            model.unet, current[:, :, part], t, slice_embeddings(whole, 1, FRAMES, part)
        )
        stepped = schedule.denoise_step(current[:, :, part], problem.eps(eps_u, part), 0)
        weight = weights[index, part].view(1, 1, -1, 1, 1)
        bound = bound + (weight * (stepped - target[:, :, part]) ** 2).sum()
    (bound / target.numel()).backward()
    assert whole.grad is not None and float(whole.grad.abs().max()) > 0
    assert torch.allclose(seen[0], whole.grad, rtol=1e-4, atol=1e-10)


def test_the_windowed_optimisation_lowers_the_loss_over_all_frames():
    model, schedule, cond, empty, pivots = long_inversion()
    counter = PassCounter()

    def run(inner: int, counter=None):
        config = NullTextSettings(inner_steps=inner, learning_rate=0.1, early_stop=0.0)
        config = config.model_copy(update={"early_stop_slope": 0.0})
        return optimise_nulls(
            model.unet,
            schedule,
            pivots,
            cond,
            config,
            CFG,
            null=initial_null(empty, FRAMES, "per-frame"),
            windows=PLAN,
            counter=counter,
        )

    untouched, optimised = run(0), run(2, counter)
    assert optimised[0].null.shape[0] == FRAMES and optimised[0].iterations == 2
    assert optimised[0].loss < untouched[0].loss
    final = [float(((r[-1].next_latent - pivots[0]) ** 2).mean()) for r in (untouched, optimised)]
    assert final[1] < final[0]
    # per step: 3 conditional windows + (2 updates + 1) x 3 unconditional windows; 6 backwards
    assert counter.forwards == STEPS * (3 + 3 * 3) and counter.backwards == STEPS * 6


def test_stdg_per_window_reads_each_windows_frames_and_masks():
    model, schedule, cond, _, pivots = long_inversion()
    masks = _masks(FRAMES)
    settings = STDGSettings()
    stdg = STDG(model.unet, settings, masks, (8, 8), PassCounter())
    t = schedule.timesteps[1]
    latent = pivots[STEPS - 1] + 0.05 * torch.randn(
        pivots[0].shape, generator=torch.Generator().manual_seed(5)
    )
    pivot = pivots[STEPS - 1]
    grad, loss = stdg.windowed_guidance(latent, pivot, t, cond, PLAN)
    assert grad.shape == latent.shape and bool(torch.isfinite(grad).all()) and loss > 0
    assert stdg.counter is not None and stdg.counter.backwards == PLAN.count
    # frames 0-5 lie in window 0 only: its G is that of an 8-frame clip with masks 0-7
    alone = STDG(model.unet, settings, masks[:8], (8, 8))
    first, first_loss = alone.guidance(latent[:, :, :8], pivot[:, :, :8], t, cond)
    assert torch.allclose(grad[:, :, :6], first[:, :, :6], rtol=1e-5, atol=1e-9)
    assert not torch.allclose(grad[:, :, 7], first[:, :, 7])  # a blended frame
    one = STDG(model.unet, settings, masks, (8, 8))
    plain, _ = one.guidance(latent, pivot, t, cond)
    single, _ = one.windowed_guidance(latent, pivot, t, cond, plan_windows(FRAMES, 32, 4))
    assert torch.equal(plain, single)
    assert first_loss > 0


def test_a_40_frame_clip_inverts_through_windows_and_samples_back(tiny_model):
    """DDIM inversion and CFG sampling of a 40-frame clip on the tiny model (positional
    encodings for 32): through 3 windows of 16 they run; in one call they cannot."""
    import pytest

    from videodirector_cli.diffusion.inversion import ddim_invert, sample_cfg

    schedule = Schedule.from_scheduler(tiny_model.scheduler, 2)
    cond, empty = encode_prompt(tiny_model, PROMPT), encode_prompt(tiny_model, "")
    clean = torch.randn(1, 4, 40, 8, 8, generator=torch.Generator().manual_seed(2))
    plan = plan_windows(40, 16, 4)
    counter = PassCounter()
    pivots = ddim_invert(tiny_model.unet, schedule, clean, cond, counter, plan)
    assert pivots.shape == (3, 1, 4, 40, 8, 8) and counter.forwards == 2 * 3
    back = sample_cfg(tiny_model.unet, schedule, pivots[-1], cond, empty, 1.0, windows=plan)
    assert float(((back - clean) ** 2).mean()) < float(((pivots[-1] - clean) ** 2).mean())
    with pytest.raises(RuntimeError):
        ddim_invert(tiny_model.unet, schedule, clean, cond)
