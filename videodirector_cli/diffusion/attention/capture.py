"""Attention processors that record what STDG compares: temporal probabilities and spatial keys.

SDPA never returns attention probabilities, so the temporal layers STDG reads compute softmax
explicitly (and only those layers); spatial self-attention layers only record their keys and keep
SDPA. Both compute the same output as diffusers' default processor (AttnProcessor2_0), through
the shared halves in ``projection``. The processors share one ``FeatureRecorder``;
motion-module attention gets no per-call kwargs, so state lives there, never in globals.

Recorded layouts:
- temporal: (B*H*W, heads, F, F), row index (b*H + y)*W + x; the query frame is axis 2;
- keys: (B*F, H*W, C) after ``to_k`` (and ``norm_k`` where a model has one; heads merged),
  frame index minor in the batch axis.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from videodirector_cli.diffusion.attention.layers import layers_of
from videodirector_cli.diffusion.attention.projection import (
    attention_bias,
    finish,
    project_qkv,
    sdpa,
)


@dataclass
class FeatureRecorder:
    """What the capture processors saw during one forward."""

    temporal: dict[str, torch.Tensor] = field(default_factory=dict)
    keys: dict[str, torch.Tensor] = field(default_factory=dict)

    def clear(self) -> None:
        self.temporal.clear()
        self.keys.clear()


class TemporalProbsProcessor:
    """Explicit-softmax attention that records the probabilities (keeps their graph)."""

    def __init__(self, recorder: FeatureRecorder, name: str) -> None:
        self.recorder = recorder
        self.name = name

    def __call__(
        self,
        attn,
        hidden_states,
        encoder_hidden_states=None,
        attention_mask=None,
        temb=None,
        *args,
        **kwargs,
    ):
        query, key, value = project_qkv(attn, hidden_states, encoder_hidden_states)
        scores = torch.matmul(query.float(), key.float().transpose(-1, -2)) * attn.scale
        bias = attention_bias(attn, attention_mask, query.shape[0], key.shape[2])
        if bias is not None:
            scores = scores + bias.float()
        probs = scores.softmax(dim=-1)
        self.recorder.temporal[self.name] = probs
        return finish(attn, torch.matmul(probs.to(value.dtype), value), hidden_states)


class KeyRecordingProcessor:
    """The default SDPA attention, recording the keys (keeps their graph)."""

    def __init__(self, recorder: FeatureRecorder, name: str) -> None:
        self.recorder = recorder
        self.name = name

    def __call__(
        self,
        attn,
        hidden_states,
        encoder_hidden_states=None,
        attention_mask=None,
        temb=None,
        *args,
        **kwargs,
    ):
        query, key, value = project_qkv(attn, hidden_states, encoder_hidden_states)
        self.recorder.keys[self.name] = key.transpose(1, 2).flatten(2)  # heads merged back
        bias = attention_bias(attn, attention_mask, query.shape[0], key.shape[2])
        return finish(attn, sdpa(query, key, value, attn.scale, bias), hidden_states)


def capture_processors(
    unet,
    recorder: FeatureRecorder,
    blocks: tuple[str, ...],
    temporal: bool = True,
    keys: bool = True,
) -> dict[str, object]:
    """{processor name: capture processor} for the temporal and/or spatial self-attention
    layers of ``blocks``; pass to ``swap.swapped_processors``."""
    chosen: dict[str, object] = {}
    if temporal:
        for layer in layers_of(unet, "temporal", blocks):
            chosen[layer.name] = TemporalProbsProcessor(recorder, layer.name)
    if keys:
        for layer in layers_of(unet, "spatial_self", blocks):
            chosen[layer.name] = KeyRecordingProcessor(recorder, layer.name)
    return chosen
