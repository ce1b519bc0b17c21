"""Overlapping temporal windows: how a clip longer than the motion module allows reaches the UNet.

The motion modules add a sinusoidal positional encoding per frame and have encodings for only
``motion_max_seq_length`` frames (32 for AnimateDiff v2/v3, trained on 16). A longer clip is
split into windows of ``window`` frames that overlap by at least ``overlap`` frames; the UNet
runs once per window and the noise predictions of frames that several windows cover are
blended with weights that fall off towards each window's edges (the idea of FreeNoise and of
AnimateDiff's context scheduling; written here for vdir's own loops). The blending weights of a
frame sum to one, so a frame covered by one window gets that window's eps unchanged, and a clip
that fits one window is one plain ``predict_noise`` call, bit for bit.

Everything is linear in eps after the UNet (CFG, the STDG term, the DDIM step), so blending
the UNet's eps per call is the same as blending the final eps or the stepped latents.

The attention processors (STDG's capture, the edit controls) see one window at a time: the
caller's ``before_window`` hook tells them which frames the call holds (their masks are per
frame of the clip and must be sliced).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from videodirector_cli.diffusion.passes import PassCounter
from videodirector_cli.diffusion.unet_call import predict_noise
from videodirector_cli.errors import UsageError

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class MotionLimits:
    """What a motion module allows per UNet call, read from its configuration."""

    positions: int
    """Frames the positional encodings cover: no UNet call may hold more."""
    default_window: int
    """The window used when a clip needs windows and ``--window`` is not given."""


def limits_from_config(config: Any) -> MotionLimits:
    """From a UNetMotionModel's or MotionAdapter's config (``motion_max_seq_length``).

    The config holds no training length. AnimateDiff v2/v3 and the toy model were trained on
    half their encodings' length (16 of 32), so the default window is half the positions; for
    v1 (24 positions, trained on 16) that gives 12: more windows, never out of range.
    """
    getter = config.get if hasattr(config, "get") else lambda k, d=None: getattr(config, k, d)
    positions = getter("motion_max_seq_length", None)
    if positions is None:
        raise ValueError("the model's config has no motion_max_seq_length")
    positions = int(positions)
    return MotionLimits(positions=positions, default_window=max(1, positions // 2))


def motion_limits(unet) -> MotionLimits:
    """The limits of a loaded UNetMotionModel."""
    return limits_from_config(unet.config)


def default_model_limits() -> MotionLimits:
    """The limits of the default motion module (AnimateDiff v3), from its bundled config."""
    import json

    from videodirector_cli.diffusion.loading.motion import MOTION_V3_CONFIG

    return limits_from_config(json.loads(MOTION_V3_CONFIG.read_text(encoding="utf-8")))


def long_clip_note(frames: int, limits: MotionLimits) -> str | None:
    """What `vdir init` says when the clip will need windows (None when it will not)."""
    if frames <= limits.positions:
        return None
    plan = resolve_plan(limits, frames, None, None)
    return (
        f"{frames} frames is more than the default motion module's {limits.positions} positional "
        f"encodings: vdir invert and edit will see the clip through {plan.describe()} "
        "(--window, --window-overlap; docs/long-clips.md)"
    )


def default_overlap(window: int) -> int:
    """Half the window (8 of 16): measured on the toy model at 64 frames, the seam score fell
    from 1.55 with a quarter (5 windows) to 1.17 (7 windows, 40 % more UNet work;
    docs/long-clips.md)."""
    return window // 2


@dataclass(frozen=True)
class WindowPlan:
    """The windows a clip of ``frames`` frames is split into, first frame of each in ``starts``."""

    frames: int
    window: int
    """Frames per UNet call (the clip's length when it fits one call)."""
    overlap: int
    """The least overlap of neighbouring windows (the last window is aligned to the clip's
    end, so it may overlap its neighbour by more)."""
    starts: tuple[int, ...]

    @property
    def single(self) -> bool:
        """One window: the UNet sees the whole clip, exactly as without windows."""
        return len(self.starts) == 1

    @property
    def count(self) -> int:
        return len(self.starts)

    def slices(self) -> list[slice]:
        return [slice(start, min(start + self.window, self.frames)) for start in self.starts]

    def weights(self) -> torch.Tensor:
        """(count, frames) float32: each window's blending weight per frame of the clip, zero
        outside it; every column sums to one.

        Inside a window the raw weight is 1, falling linearly to 1/(overlap + 1) at its first
        and last frame over ``overlap`` frames: a linear cross-fade where two windows meet.
        """
        import torch

        raw = torch.zeros((self.count, self.frames), dtype=torch.float64)
        ramp = self.overlap + 1
        for index, part in enumerate(self.slices()):
            size = part.stop - part.start
            position = torch.arange(size, dtype=torch.float64)
            edge = torch.minimum(position + 1, size - position) / ramp
            raw[index, part] = edge.clamp(max=1.0)
        return (raw / raw.sum(dim=0, keepdim=True)).to(torch.float32)

    def boundaries(self) -> list[int]:
        """Frame indices f where a window begins or ends inside the clip: the transitions
        f-1 -> f where a seam could show (empty for one window)."""
        found: set[int] = set()
        for part in self.slices():
            if part.start > 0:
                found.add(part.start)
            if part.stop < self.frames:
                found.add(part.stop)
        return sorted(found)

    def as_dict(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "window": self.window,
            "overlap": self.overlap,
            "windows": self.count,
            "starts": list(self.starts),
            "boundaries": self.boundaries(),
        }

    def describe(self) -> str:
        if self.single:
            return f"one window ({self.frames} frames in every UNet call)"
        return (
            f"{self.count} windows of {self.window} frames, overlap {self.overlap} "
            f"(starts {', '.join(str(s) for s in self.starts)})"
        )


def plan_windows(frames: int, window: int, overlap: int) -> WindowPlan:
    """Windows of ``window`` frames every ``window - overlap`` frames; the last one ends at
    the clip's end. A clip no longer than ``window`` is one window."""
    if frames < 1:
        raise ValueError(f"a clip of {frames} frames")
    if window < 1 or overlap < 0 or overlap >= window:
        raise ValueError(f"window {window} with overlap {overlap}")
    if frames <= window:
        return WindowPlan(frames, frames, 0, (0,))
    stride = window - overlap
    starts = list(range(0, frames - window, stride))
    starts.append(frames - window)
    return WindowPlan(frames, window, overlap, tuple(starts))


def resolve_plan(
    limits: MotionLimits, frames: int, window: int | None, overlap: int | None
) -> WindowPlan:
    """The plan for a clip from ``--window`` / ``--window-overlap`` (None: the defaults).

    Without ``--window`` a clip that the positional encodings cover runs in one call, as vdir
    always did (same result, same inversion key); a longer one gets windows of the default
    length. A UsageError (exit 2) names what does not fit.
    """
    if window is not None and window > limits.positions:
        raise UsageError(
            f"--window {window}: the motion module has positional encodings for "
            f"{limits.positions} frames, so no UNet call can hold more",
            hint=f"use --window {limits.positions} or less (default {limits.default_window})",
        )
    if window is None and overlap is None and frames <= limits.positions:
        return plan_windows(frames, frames, 0)
    size = limits.default_window if window is None else window
    gap = default_overlap(size) if overlap is None else overlap
    if gap >= size:
        raise UsageError(
            f"--window-overlap {gap} must be smaller than the window ({size} frames)",
            hint=f"try --window-overlap {default_overlap(size)}",
        )
    return plan_windows(frames, size, gap)


def slice_embeddings(
    embeddings: torch.Tensor, batch: int, frames: int, window: slice
) -> torch.Tensor:
    """The embeddings of ``window``'s frames: (B*F, L, D) per frame of every row, or one
    video's (F, L, D) per frame, sliced; one embedding for every frame (1, L, D) as it is."""
    if embeddings.shape[0] == batch * frames:
        rows = embeddings.view(batch, frames, *embeddings.shape[1:])[:, window]
        return rows.reshape(-1, *embeddings.shape[1:])
    if embeddings.shape[0] == frames:
        return embeddings[window]
    if embeddings.shape[0] == 1:
        return embeddings
    raise ValueError(f"{embeddings.shape[0]} embeddings for {batch} rows of {frames} frames")


def blend(
    plan: WindowPlan,
    like: torch.Tensor,
    per_window: Callable[[slice], torch.Tensor],
) -> torch.Tensor:
    """Sum over windows of weight x ``per_window(frames)``, into a float32 tensor shaped like
    ``like`` (B, C, F, h, w); ``per_window`` returns (B, C, window, h, w)."""
    import torch

    weights = plan.weights().to(like.device)
    out = torch.zeros(like.shape, dtype=torch.float32, device=like.device)
    for index, part in enumerate(plan.slices()):
        weight = weights[index, part].view(1, 1, -1, 1, 1)
        out[:, :, part] += weight * per_window(part).to(torch.float32)
    return out


def windowed_noise(
    unet,
    latents: torch.Tensor,
    timestep: int,
    embeddings: torch.Tensor,
    plan: WindowPlan | None,
    *,
    counter: PassCounter | None = None,
    purpose: str = "forward",
    before_window: Callable[[slice | None], None] | None = None,
) -> torch.Tensor:
    """``predict_noise`` through the windows of ``plan``; with one window (or no plan) it IS
    ``predict_noise``. Each window's call counts as one forward per row on ``counter``.
    ``before_window(frames)`` runs before each call (and with None after the last)."""
    if plan is None or plan.single:
        return predict_noise(unet, latents, timestep, embeddings, counter=counter, purpose=purpose)
    if plan.frames != latents.shape[2]:
        raise ValueError(f"a plan for {plan.frames} frames, latents of {latents.shape[2]}")
    batch, frames = latents.shape[0], latents.shape[2]

    def one(part: slice) -> torch.Tensor:
        if before_window is not None:
            before_window(part)
        return predict_noise(
            unet,
            latents[:, :, part],
            timestep,
            slice_embeddings(embeddings, batch, frames, part),
            counter=counter,
            purpose=purpose,
        )

    try:
        return blend(plan, latents, one)
    finally:
        if before_window is not None:
            before_window(None)
