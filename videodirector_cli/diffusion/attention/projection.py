"""The two halves every attention processor here shares: project q/k/v, and merge + project out.

Together with ``sdpa`` in between they compute what diffusers' default ``AttnProcessor2_0`` does
for the transformer attention of SD1.5 and AnimateDiff (spatial self- and cross-attention, the
motion modules' temporal attention): the same projections, scale, residual and rescale. The
capture processors (STDG) and the edit processors (SA-I, SA-II, cross-attention control) swap
only the middle.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_CPU_MAP_BUDGET = 1 << 30
"""Bytes of attention scores one SDPA call may materialise on the CPU (its math kernel)."""


def project_qkv(attn, hidden_states: torch.Tensor, context: torch.Tensor | None = None):
    """Queries, keys and values as (batch, heads, tokens, head_dim), with the module's own layers."""
    if attn.spatial_norm is not None or attn.group_norm is not None or hidden_states.ndim != 3:
        raise NotImplementedError("only the SD1.5 / AnimateDiff transformer attention is supported")
    batch = hidden_states.shape[0]
    source = hidden_states if context is None else context
    if context is not None and attn.norm_cross:
        source = attn.norm_encoder_hidden_states(source)
    query, key, value = attn.to_q(hidden_states), attn.to_k(source), attn.to_v(source)
    head_dim = key.shape[-1] // attn.heads

    def split(x: torch.Tensor) -> torch.Tensor:
        return x.view(batch, -1, attn.heads, head_dim).transpose(1, 2)

    query, key, value = split(query), split(key), split(value)
    if attn.norm_q is not None:
        query = attn.norm_q(query)
    if attn.norm_k is not None:
        key = attn.norm_k(key)
    return query, key, value


def finish(attn, out: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """Merge heads, output projection, the module's residual/rescale conventions."""
    batch, heads, tokens, head_dim = out.shape
    hidden = out.transpose(1, 2).reshape(batch, tokens, heads * head_dim).to(residual.dtype)
    hidden = attn.to_out[1](attn.to_out[0](hidden))
    if attn.residual_connection:
        hidden = hidden + residual
    return hidden / attn.rescale_output_factor


def sdpa(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    scale: float,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """scaled_dot_product_attention, in batch chunks on the CPU so its math kernel fits memory.

    On the meta device (memory and FLOP accounting, diffusion/accounting.py) it runs the
    memory-efficient kernel CUDA picks, which PyTorch would otherwise replace by its math
    kernel there: the accounting then neither stores a full attention map nor misses the
    backward's recomputation of it.
    """
    if query.device.type == "meta":
        return _meta_efficient_attention(query, key, value, scale, mask)
    batch, heads, queries, _ = query.shape
    per_item = heads * queries * key.shape[2] * 4
    if query.device.type != "cpu" or batch * per_item <= _CPU_MAP_BUDGET:
        return F.scaled_dot_product_attention(query, key, value, attn_mask=mask, scale=scale)
    chunk = max(1, _CPU_MAP_BUDGET // per_item)
    parts = []
    for start in range(0, batch, chunk):
        part_mask = None
        if mask is not None:
            part_mask = mask if mask.shape[0] == 1 else mask[start : start + chunk]
        parts.append(
            F.scaled_dot_product_attention(
                query[start : start + chunk],
                key[start : start + chunk],
                value[start : start + chunk],
                attn_mask=part_mask,
                scale=scale,
            )
        )
    return torch.cat(parts)


def _meta_efficient_attention(query, key, value, scale: float, mask) -> torch.Tensor:
    bias = None
    if mask is not None:
        bias = mask
        if mask.dtype == torch.bool:  # what SDPA does with a boolean mask before its kernels
            bias = torch.zeros(mask.shape, dtype=query.dtype, device=query.device)
            bias = bias.masked_fill(~mask, float("-inf"))
        bias = bias.to(query.dtype).expand(query.shape[0], query.shape[1], query.shape[2], -1)
    needs_grad = torch.is_grad_enabled() and any(x.requires_grad for x in (query, key, value))
    out = torch.ops.aten._scaled_dot_product_efficient_attention(
        query, key, value, bias, needs_grad, scale=scale
    )
    return out[0]


def attention_bias(attn, attention_mask: torch.Tensor | None, batch: int, keys: int):
    """diffusers' additive attention mask as (batch, heads, 1 or queries, keys), or None."""
    if attention_mask is None:
        return None
    mask = attn.prepare_attention_mask(attention_mask, keys, batch)
    return mask.view(batch, attn.heads, -1, mask.shape[-1])
