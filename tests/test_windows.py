"""Temporal windows (diffusion/windows.py): the plan, the blending weights, the windowed UNet call
on the tiny model, and what the attention controls see of a window."""

from __future__ import annotations

import itertools

import pytest
import torch
from _helpers_invert import PROMPT

from videodirector_cli.diffusion.passes import PassCounter
from videodirector_cli.diffusion.prompts import encode_prompt
from videodirector_cli.diffusion.unet_call import predict_noise
from videodirector_cli.diffusion.windows import (
    MotionLimits,
    limits_from_config,
    motion_limits,
    plan_windows,
    resolve_plan,
    slice_embeddings,
    windowed_noise,
)
from videodirector_cli.errors import UsageError

LIMITS = MotionLimits(positions=32, default_window=16)


def _latents(frames: int, seed: int = 3) -> torch.Tensor:
    return torch.randn(1, 4, frames, 8, 8, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    ("frames", "window", "overlap"),
    [(40, 16, 4), (64, 16, 4), (128, 16, 8), (17, 16, 0), (33, 8, 7), (100, 32, 8), (5, 2, 1)],
)
def test_windows_cover_the_clip_and_the_weights_sum_to_one_per_frame(frames, window, overlap):
    plan = plan_windows(frames, window, overlap)
    parts = plan.slices()
    assert parts[0].start == 0 and parts[-1].stop == frames
    assert all(p.stop - p.start == window for p in parts)
    for left, right in itertools.pairwise(parts):
        assert left.stop - right.start >= overlap  # neighbours overlap at least that much
    weights = plan.weights()
    assert weights.shape == (plan.count, frames)
    assert torch.allclose(weights.sum(dim=0), torch.ones(frames), atol=1e-6)
    assert (weights >= 0).all()
    for index, part in enumerate(parts):  # nothing outside a window
        outside = torch.ones(frames, dtype=torch.bool)
        outside[part] = False
        assert (weights[index][outside] == 0).all()
    covered = (weights > 0).sum(dim=0)
    assert (weights[:, covered == 1].sum(dim=0) == 1.0).all()  # one window: exactly its eps


def test_the_cross_fade_falls_towards_a_windows_edge():
    plan = plan_windows(40, 16, 4)
    assert plan.starts == (0, 12, 24) and plan.boundaries() == [12, 16, 24, 28]
    weights = plan.weights()
    fade = weights[0, 12:16]  # window 0's last 4 frames, where window 1 begins
    assert (fade[1:] < fade[:-1]).all() and torch.allclose(weights[1, 12:16], 1 - fade)
    assert plan_windows(64, 16, 4).count == 5 and plan_windows(128, 16, 4).count == 11


def test_the_limits_come_from_the_models_config(tiny_model):
    limits = motion_limits(tiny_model.unet)
    assert limits.positions == tiny_model.unet.config.motion_max_seq_length
    assert limits.default_window == limits.positions // 2
    assert limits_from_config({"motion_max_seq_length": 24}).default_window == 12
    with pytest.raises(ValueError):
        limits_from_config({})


def test_the_default_plan_keeps_every_clip_the_encodings_cover_in_one_call():
    assert resolve_plan(LIMITS, 32, None, None).single
    assert resolve_plan(LIMITS, 16, 16, None).single
    long = resolve_plan(LIMITS, 40, None, None)
    assert (long.window, long.overlap, long.count) == (16, 8, 4)  # half the window overlaps
    assert resolve_plan(LIMITS, 24, None, 2).count == 2  # an overlap asks for windows
    assert resolve_plan(LIMITS, 40, 8, None).overlap == 4


@pytest.mark.parametrize(
    ("window", "overlap", "says"),
    [(33, None, "positional encodings for 32"), (None, 16, "smaller than the window")],
)
def test_what_the_model_cannot_take_is_a_usage_error(window, overlap, says):
    with pytest.raises(UsageError, match=says):
        resolve_plan(LIMITS, 40, window, overlap)


def test_embeddings_are_sliced_per_frame_of_every_row():
    per_row = torch.arange(2 * 6, dtype=torch.float32).view(12, 1, 1)
    assert slice_embeddings(per_row, 2, 6, slice(2, 4)).flatten().tolist() == [2, 3, 8, 9]
    video = torch.arange(6, dtype=torch.float32).view(6, 1, 1)
    assert slice_embeddings(video, 2, 6, slice(4, 6)).flatten().tolist() == [4, 5]
    shared = torch.ones(1, 1, 1)
    assert slice_embeddings(shared, 2, 6, slice(0, 3)) is shared


def test_a_clip_that_fits_one_window_is_todays_call_bit_for_bit(tiny_model):
    latents = _latents(16)
    cond = encode_prompt(tiny_model, PROMPT)
    plan = resolve_plan(motion_limits(tiny_model.unet), 16, None, None)
    with torch.no_grad():
        plain = predict_noise(tiny_model.unet, latents, 500, cond)
        windowed = windowed_noise(tiny_model.unet, latents, 500, cond, plan)
        explicit = windowed_noise(tiny_model.unet, latents, 500, cond, plan_windows(16, 16, 4))
    assert torch.equal(plain, windowed) and torch.equal(plain, explicit)


def test_a_40_frame_clip_runs_through_three_windows_of_16(tiny_model):
    latents = _latents(40)
    cond = encode_prompt(tiny_model, PROMPT)
    plan = resolve_plan(motion_limits(tiny_model.unet), 40, None, 4)  # the model's window
    counter = PassCounter()
    seen: list[slice | None] = []
    with torch.no_grad():
        eps = windowed_noise(
            tiny_model.unet, latents, 500, cond, plan, counter=counter, before_window=seen.append
        )
        first = predict_noise(tiny_model.unet, latents[:, :, :16], 500, cond)
        second = predict_noise(tiny_model.unet, latents[:, :, 12:28], 500, cond)
    assert eps.shape == latents.shape and bool(torch.isfinite(eps).all())
    assert counter.forwards == 3 and counter.forward_equivalents == 3
    assert seen == [slice(0, 16), slice(12, 28), slice(24, 40), None]
    assert torch.equal(eps[:, :, :12], first[:, :, :12])  # frames only window 0 covers
    weights = plan.weights()
    mixed = weights[0, 13] * first[:, :, 13] + weights[1, 13] * second[:, :, 1]
    assert torch.allclose(eps[:, :, 13], mixed, atol=1e-6)
    assert not torch.allclose(eps[:, :, 13], first[:, :, 13])  # a seam frame is a blend


def test_the_edit_controller_sees_the_windows_frames_and_masks():
    from videodirector_cli.diffusion.attention.controller import EditController
    from videodirector_cli.settings.edit import EditSettings

    masks = torch.zeros(40, 16, 16, dtype=torch.bool)
    masks[20:, :8] = True
    controller = EditController(EditSettings(), frames=40, latent_hw=(8, 8), masks=masks)
    full = controller.foreground(64, torch.device("cpu"))
    assert full is not None and full.shape == (40, 64)
    controller.set_window(slice(12, 28))
    assert controller.window_frames == 16
    controller.check_batch(4 * 16)
    part = controller.foreground(64, torch.device("cpu"))
    assert part is not None and torch.equal(part, full[12:28])
    with pytest.raises(RuntimeError):
        controller.check_batch(4 * 40)
    controller.set_window(None)
    controller.check_batch(4 * 40)
