"""Which attention module is which, from its name in UNetMotionModel.

Temporal attention lives under ``motion_modules`` and BOTH its attn1 and attn2 are self-attention
across frames, so layers are classified by name, never by ``encoder_hidden_states is None``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

LayerKind = Literal["spatial_self", "cross", "temporal"]

_PROCESSOR_SUFFIX = ".processor"
_BLOCK_RE = re.compile(r"^(down_blocks\.\d+|mid_block|up_blocks\.\d+)\.")


@dataclass(frozen=True)
class AttentionLayer:
    name: str
    """Processor key as ``unet.attn_processors`` names it (ends in '.processor')."""
    kind: LayerKind
    block: str
    """'down_blocks.0', 'mid_block', 'up_blocks.2', ..."""
    order: int
    """Position among layers of the same kind in forward (call) order."""

    @property
    def module_name(self) -> str:
        return self.name[: -len(_PROCESSOR_SUFFIX)]


def classify(name: str) -> LayerKind:
    if ".motion_modules." in name:
        return "temporal"
    if name.endswith("attn1.processor") or name.endswith("attn1"):
        return "spatial_self"
    if name.endswith("attn2.processor") or name.endswith("attn2"):
        return "cross"
    raise ValueError(f"not an attention processor name: {name}")


def _call_order_key(name: str) -> tuple[int, int, int, str]:
    """Forward order: down blocks, mid block, up blocks; within a block, by attention index."""
    match = _BLOCK_RE.match(name)
    block = match.group(1) if match else ""
    if block.startswith("down_blocks"):
        stage, number = 0, int(block.split(".")[1])
    elif block == "mid_block":
        stage, number = 1, 0
    else:
        stage, number = 2, int(block.split(".")[1]) if block else 0
    index_match = re.search(r"\.(attentions|motion_modules)\.(\d+)\.", name)
    index = int(index_match.group(2)) if index_match else 0
    return (stage, number, index, name)


def attention_layers(processor_names: list[str]) -> list[AttentionLayer]:
    """All attention layers, with per-kind call order as the reference counts layers."""
    ordered = sorted(processor_names, key=_call_order_key)
    counters: dict[str, int] = {}
    layers = []
    for name in ordered:
        kind = classify(name)
        match = _BLOCK_RE.match(name)
        block = match.group(1) if match else ""
        layers.append(AttentionLayer(name, kind, block, counters.get(kind, 0)))
        counters[kind] = counters.get(kind, 0) + 1
    return layers


def layers_of(unet, kind: LayerKind, blocks: tuple[str, ...] | None = None) -> list[AttentionLayer]:
    """Layers of one kind in ``unet``, optionally only inside the given blocks."""
    found = [layer for layer in attention_layers(list(unet.attn_processors)) if layer.kind == kind]
    if blocks is not None:
        found = [layer for layer in found if layer.block in blocks]
    return found
