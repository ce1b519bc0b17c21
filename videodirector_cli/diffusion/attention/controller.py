"""The shared state of the editing attention processors, told the step by the sampling loop.

One batched UNet call per editing step carries four videos ("rows") of F frames each, frames
minor, in this order:

    0 edit + optimised null | 1 edit + edit prompt | 2 reconstruction + null | 3 reconstruction + source prompt

The processors read the row layout, the step's phase (SA-I, SA-II, cross-attention control) and
the per-layer masks from here. Nothing counts layer calls: ``set_step`` is called by the loop.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from videodirector_cli.diffusion.attention.layers import AttentionLayer, attention_layers
from videodirector_cli.diffusion.attention.swap import swapped_processors
from videodirector_cli.errors import UsageError

if TYPE_CHECKING:
    from videodirector_cli.diffusion.attention.seq_align import TokenMapping
    from videodirector_cli.settings.edit import EditSettings

EDIT_UNCOND, EDIT_COND, REC_UNCOND, REC_COND = 0, 1, 2, 3
ROWS = 4
ROW_NAMES = ("edit+null", "edit+edit prompt", "reconstruction+null", "reconstruction+source prompt")


def rows_view(x: torch.Tensor) -> torch.Tensor:
    """(ROWS * F, ...) -> (ROWS, F, ...)."""
    return x.view(ROWS, x.shape[0] // ROWS, *x.shape[1:])


def parse_layer_spec(layers: list[AttentionLayer], spec: str) -> list[AttentionLayer]:
    """Resolve an SA-II layer spec against the spatial self-attention layers of a UNet."""
    text = spec.strip().lower()
    if text in ("decoder", "up", "up_blocks"):
        return [layer for layer in layers if layer.block.startswith("up_blocks")]
    if text == "all":
        return list(layers)
    if text in ("none", ""):
        return []
    chosen: dict[str, AttentionLayer] = {}
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        found = _match_layer_item(layers, item)
        if not found:
            raise UsageError(
                f"--sa2-layers: '{item}' names no spatial self-attention layer",
                hint=f"use 'decoder', 'all', indices 0-{len(layers) - 1}, ranges like 3-6, "
                "or block names such as up_blocks.1",
            )
        chosen.update({layer.name: layer for layer in found})
    return sorted(chosen.values(), key=lambda layer: layer.order)


def _match_layer_item(layers: list[AttentionLayer], item: str) -> list[AttentionLayer]:
    low, sep, high = item.partition("-")
    if low.isdigit() and (not sep or high.isdigit()):
        first, last = int(low), int(high) if sep else int(low)
        return [layer for layer in layers if first <= layer.order <= last]
    return [
        layer
        for layer in layers
        if layer.block == item or layer.module_name == item or layer.name == item
    ]


def layer_grid(tokens: int, latent_hw: tuple[int, int]) -> tuple[int, int]:
    """(h, w) of a layer with ``tokens`` positions per frame, from the latent size.

    The UNet halves the size (rounding up) per down block, so walk down until the count fits.
    """
    h, w = latent_hw
    while h * w > tokens:
        h, w = math.ceil(h / 2), math.ceil(w / 2)
    if h * w != tokens:
        raise ValueError(f"{tokens} tokens do not match a {latent_hw} latent grid")
    return h, w


@dataclass
class EditController:
    """Step state, row layout, masks and token mappings shared by the edit processors."""

    settings: EditSettings
    """Which controls run and when (tau_s, tau_c, sa1, sa2, cross, sa2_layers, sa1_max_tokens)."""
    frames: int
    latent_hw: tuple[int, int]
    masks: torch.Tensor | None = None
    """(F, H, W) bool foreground at any resolution (frame pixels); None: no mask."""
    mapping: TokenMapping | None = None
    """Source-to-edit token mapping for the cross-attention maps (None: keep the edit's own)."""
    reweight: torch.Tensor | None = None
    """(L,) scale per edit-prompt token (None: no reweighting)."""
    step: int = 0
    steps: int = 1
    window: slice | None = None
    """The clip's frames the current UNet call holds (None: all of them); set by the loop."""
    applied: Counter[str] = field(default_factory=Counter)
    """How many layer calls each control touched, over the whole edit."""
    _mask_cache: dict[tuple[int, str], torch.Tensor] = field(default_factory=dict, repr=False)

    # step -------------------------------------------------------------------------------------
    def set_step(self, index: int, steps: int) -> None:
        """Called by the sampling loop before each UNet call."""
        self.step, self.steps = index, steps

    def set_window(self, frames: slice | None) -> None:
        """Called by the windowed UNet call before each window (None: the whole clip again)."""
        self.window = frames

    @property
    def window_frames(self) -> int:
        """Frames per row in the current UNet call."""
        if self.window is None:
            return self.frames
        return len(range(*self.window.indices(self.frames)))

    @property
    def sa1_active(self) -> bool:
        return self.settings.sa1 and self.step < int(self.steps * self.settings.tau_s)

    @property
    def sa2_active(self) -> bool:
        return self.settings.sa2 and self.step >= int(self.steps * self.settings.tau_s)

    @property
    def cross_active(self) -> bool:
        if not self.settings.cross or (self.mapping is None and self.reweight is None):
            return False
        return self.step < int(self.steps * self.settings.tau_c)

    # rows -------------------------------------------------------------------------------------
    def check_batch(self, batch: int) -> None:
        if batch != ROWS * self.window_frames:
            raise RuntimeError(
                f"edit attention expects {ROWS} rows of {self.window_frames} frames, "
                f"got batch {batch}"
            )

    # masks ------------------------------------------------------------------------------------
    def foreground(self, tokens: int, device: torch.device) -> torch.Tensor | None:
        """(frames, tokens) bool: which positions of a layer lie in the edited region, for the
        frames of the current window (None: no mask).

        The mask is area-averaged to the layer's grid and thresholded at one half.
        """
        if self.masks is None:
            return None
        key = (tokens, str(device))
        if key not in self._mask_cache:
            h, w = layer_grid(tokens, self.latent_hw)
            soft = torch.nn.functional.adaptive_avg_pool2d(
                self.masks.to(torch.float32)[:, None], (h, w)
            )
            self._mask_cache[key] = (soft[:, 0] >= 0.5).reshape(self.frames, h * w).to(device)
        found = self._mask_cache[key]
        return found if self.window is None else found[self.window]

    def note(self, control: str) -> None:
        self.applied[control] += 1


def edit_processors(unet, controller: EditController) -> dict[str, object]:
    """The processors for an edit: spatial self-attention and cross-attention, by name."""
    from videodirector_cli.diffusion.attention.cross_control import CrossControlProcessor
    from videodirector_cli.diffusion.attention.self_control import SelfControlProcessor

    layers = attention_layers(list(unet.attn_processors))
    spatial = [layer for layer in layers if layer.kind == "spatial_self"]
    sa2_names = {layer.name for layer in parse_layer_spec(spatial, controller.settings.sa2_layers)}
    processors: dict[str, object] = {}
    for layer in layers:
        if layer.kind == "spatial_self":
            processors[layer.name] = SelfControlProcessor(controller, layer.name in sa2_names)
        elif layer.kind == "cross":
            processors[layer.name] = CrossControlProcessor(controller)
    return processors


@contextmanager
def edit_attention(unet, controller: EditController) -> Iterator[EditController]:
    """Install the edit processors for a ``with`` block; the originals come back in finally."""
    with swapped_processors(unet, edit_processors(unet, controller)):
        yield controller
