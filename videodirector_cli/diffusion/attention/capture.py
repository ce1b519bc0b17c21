"""Attention processors that record what STDG compares: temporal probabilities and spatial keys.

SDPA never returns attention probabilities, so the temporal layers STDG reads compute softmax
explicitly (and only those layers); spatial self-attention layers only record their keys and keep
SDPA. Both compute the same output as diffusers' default processor (AttnProcessor2_0): same
norms, projections, scale, residual and rescale. The processors share one ``FeatureRecorder``;
motion-module attention gets no per-call kwargs, so state lives there, never in globals.

Recorded layouts:
- temporal: (B*H*W, heads, F, F), row index (b*H + y)*W + x; the query frame is axis 2;
- keys: (B*F, H*W, C) after ``to_k`` (all heads), frame index minor in the batch axis.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from videodirector_cli.diffusion.attention.layers import layers_of

if TYPE_CHECKING:
    import torch


@dataclass
class FeatureRecorder:
    """What the capture processors saw during one forward."""

    temporal: dict[str, torch.Tensor] = field(default_factory=dict)
    keys: dict[str, torch.Tensor] = field(default_factory=dict)

    def clear(self) -> None:
        self.temporal.clear()
        self.keys.clear()


def _prepare(attn, hidden_states, encoder_hidden_states, attention_mask, temb):
    """The shared front half of the default processor: norms, reshapes, q/k/v projections."""
    residual = hidden_states
    if attn.spatial_norm is not None:
        hidden_states = attn.spatial_norm(hidden_states, temb)
    shape4 = None
    if hidden_states.ndim == 4:
        shape4 = hidden_states.shape
        b, c, h, w = shape4
        hidden_states = hidden_states.view(b, c, h * w).transpose(1, 2)
    batch = (hidden_states if encoder_hidden_states is None else encoder_hidden_states).shape[0]
    sequence = (hidden_states if encoder_hidden_states is None else encoder_hidden_states).shape[1]
    if attention_mask is not None:
        attention_mask = attn.prepare_attention_mask(attention_mask, sequence, batch)
        attention_mask = attention_mask.view(batch, attn.heads, -1, attention_mask.shape[-1])
    if attn.group_norm is not None:
        hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
    query = attn.to_q(hidden_states)
    if encoder_hidden_states is None:
        encoder_hidden_states = hidden_states
    elif attn.norm_cross:
        encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
    key = attn.to_k(encoder_hidden_states)
    value = attn.to_v(encoder_hidden_states)
    return residual, shape4, batch, attention_mask, query, key, value


def _split_heads(attn, tensor, batch):
    head_dim = tensor.shape[-1] // attn.heads
    return tensor.view(batch, -1, attn.heads, head_dim).transpose(1, 2)


def _finish(attn, out, residual, shape4, batch, dtype):
    out = out.transpose(1, 2).reshape(batch, -1, out.shape[1] * out.shape[-1]).to(dtype)
    out = attn.to_out[0](out)
    out = attn.to_out[1](out)
    if shape4 is not None:
        out = out.transpose(-1, -2).reshape(shape4)
    if attn.residual_connection:
        out = out + residual
    return out / attn.rescale_output_factor


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
        import torch

        residual, shape4, batch, mask, query, key, value = _prepare(
            attn, hidden_states, encoder_hidden_states, attention_mask, temb
        )
        query, key, value = (_split_heads(attn, x, batch) for x in (query, key, value))
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        scale = query.shape[-1] ** -0.5
        scores = torch.matmul(query.float(), key.float().transpose(-1, -2)) * scale
        if mask is not None:
            scores = scores + mask.float()
        probs = scores.softmax(dim=-1)
        self.recorder.temporal[self.name] = probs
        out = torch.matmul(probs.to(value.dtype), value)
        return _finish(attn, out, residual, shape4, batch, query.dtype)


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
        import torch.nn.functional as F

        residual, shape4, batch, mask, query, key, value = _prepare(
            attn, hidden_states, encoder_hidden_states, attention_mask, temb
        )
        self.recorder.keys[self.name] = key
        query, key, value = (_split_heads(attn, x, batch) for x in (query, key, value))
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=mask, dropout_p=0.0)
        return _finish(attn, out, residual, shape4, batch, query.dtype)


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
