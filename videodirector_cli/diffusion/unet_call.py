"""Calling the UNet: per-frame text embeddings, pass counting, and stopping after given modules.

A loss that reads features of the middle of the UNet (STDG) does not need the blocks after them.
``run_until(..., stop_after=[names])`` hooks those modules and aborts the forward as soon as
all of them have run; the caller reads what its processors recorded. The abort is an exception
private to this module, raised from a forward hook and caught here, so nothing half-run leaks.

Partial forwards are counted on the PassCounter as the fraction of the UNet's FLOPs that ran,
measured once per shape with torch.utils.flop_counter on a copy of the UNet built on the meta
device (no memory, no weights).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from videodirector_cli.diffusion.passes import PassCounter

if TYPE_CHECKING:
    import torch


class _StopForward(Exception):
    """Raised by a hook once every module the caller needs has run."""


def frame_embeddings(embeddings: torch.Tensor, frames: int) -> torch.Tensor:
    """(1, L, D) or (F, L, D) -> (F, L, D): one text embedding per frame of one video."""
    if embeddings.shape[0] == frames:
        return embeddings
    if embeddings.shape[0] == 1:
        return embeddings.expand(frames, *embeddings.shape[1:])
    raise ValueError(f"{embeddings.shape[0]} embeddings for {frames} frames")


def batch_embeddings(rows: Sequence[torch.Tensor], frames: int) -> torch.Tensor:
    """Embeddings for a batch of videos, each (1 or F, L, D) -> (B*F, L, D), frame index minor."""
    import torch

    return torch.cat([frame_embeddings(row, frames) for row in rows], dim=0)


@contextmanager
def _stop_when_done(unet, module_names: Sequence[str]) -> Iterator[None]:
    remaining = set(module_names)
    handles = []

    def make_hook(name: str):
        def hook(module, args, output):
            remaining.discard(name)
            if not remaining:
                raise _StopForward

        return hook

    for name in module_names:
        handles.append(unet.get_submodule(name).register_forward_hook(make_hook(name)))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _prepare(unet, latents, embeddings):
    batch, frames = latents.shape[0], latents.shape[2]
    if embeddings.shape[0] != batch * frames:
        embeddings = batch_embeddings([embeddings] * batch, frames)
    return latents.to(unet.dtype), embeddings.to(unet.dtype)


def predict_noise(
    unet,
    latents: torch.Tensor,
    timestep: int,
    embeddings: torch.Tensor,
    *,
    counter: PassCounter | None = None,
    purpose: str = "forward",
) -> torch.Tensor:
    """eps for ``latents`` (B, C, F, h, w) as float32; ``embeddings`` (B*F, L, D), or one
    video's (1 or F, L, D) used for every batch row. Runs in the UNet's dtype."""
    import torch

    sample, context = _prepare(unet, latents, embeddings)
    if counter is not None:
        counter.add_forward(rows=latents.shape[0], purpose=purpose)
    return unet(sample, timestep, encoder_hidden_states=context).sample.to(torch.float32)


def run_until(
    unet,
    latents: torch.Tensor,
    timestep: int,
    embeddings: torch.Tensor,
    stop_after: Sequence[str],
    *,
    counter: PassCounter | None = None,
    purpose: str = "forward",
) -> float:
    """Run the UNet until every module in ``stop_after`` has run, then abort the forward.

    For callers that want what their attention processors recorded, not eps. Returns (and
    counts) the fraction of a full forward's FLOPs that ran.
    """
    if not stop_after:
        raise ValueError("run_until needs at least one module to stop after")
    sample, context = _prepare(unet, latents, embeddings)
    fraction = forward_fraction(unet, tuple(sample.shape), tuple(context.shape), stop_after)
    if counter is not None:
        counter.add_forward(rows=latents.shape[0], fraction=fraction, purpose=purpose)
    run_to(unet, sample, timestep, context, stop_after)
    return fraction


def run_to(
    unet, sample: torch.Tensor, timestep: int, context: torch.Tensor, stop_after: Sequence[str]
) -> None:
    """The bare partial forward of ``run_until``: ``sample`` and ``context`` already in the
    UNet's layout and dtype; nothing counted."""
    with _stop_when_done(unet, stop_after):
        try:
            unet(sample, timestep, encoder_hidden_states=context)
        except _StopForward:
            return
    raise RuntimeError(f"the UNet never ran all of {list(stop_after)}")


_FRACTIONS: dict[str, float] = {}


def forward_fraction(
    unet, sample_shape: tuple[int, ...], context_shape: tuple[int, ...], stop_after: Sequence[str]
) -> float:
    """Share of a full forward's FLOPs spent until every module in ``stop_after`` has run."""
    cache_key = json.dumps(
        [
            unet.config.get("_class_name", type(unet).__name__),
            dict(unet.config),
            sample_shape,
            context_shape,
            sorted(stop_after),
        ],
        sort_keys=True,
        default=str,
    )
    if cache_key not in _FRACTIONS:
        _FRACTIONS[cache_key] = measure_fraction(
            type(unet), dict(unet.config), sample_shape, context_shape, stop_after
        )
    return _FRACTIONS[cache_key]


def measure_fraction(
    unet_class,
    config: dict,
    sample_shape: tuple[int, ...],
    context_shape: tuple[int, ...],
    stop_after: Sequence[str],
) -> float:
    """FLOPs until ``stop_after`` have all run / FLOPs of the full forward, on the meta device."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = unet_class.from_config(config)
    counter = FlopCounterMode(display=False)
    reached: dict[str, int] = {}
    remaining = set(stop_after)

    def make_hook(name: str):
        def hook(module, args, output):
            remaining.discard(name)
            if not remaining and "stop" not in reached:
                reached["stop"] = counter.get_total_flops()

        return hook

    handles = [
        model.get_submodule(name).register_forward_hook(make_hook(name)) for name in stop_after
    ]
    sample = torch.empty(sample_shape, device="meta")
    context = torch.empty(context_shape, device="meta")
    try:
        with counter, torch.no_grad():
            model(sample, 500, encoder_hidden_states=context)
    finally:
        for handle in handles:
            handle.remove()
    total = counter.get_total_flops()
    if not total or "stop" not in reached:
        return 1.0
    return reached["stop"] / total
