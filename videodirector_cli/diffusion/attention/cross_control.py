"""Cross-attention control of the edit path: prompt-to-prompt word swap/refinement + reweighting.

For the first tau_c of the steps, the edit's conditional row gets the cross-attention map

    C * (alpha * (M_rec @ mapping) + (1 - alpha) * M_edit)

where M_rec is the reconstruction's conditional map (source prompt), ``mapping``/alpha come from
``seq_align`` (tokens shared with the source prompt take the source's map, new ones keep their
own) and C is the reweighting vector (1 except on the chosen words). Only the conditional rows
are controlled and only they pay for explicit maps; the unconditional rows, and every row after
tau_c, use scaled-dot-product attention.
"""

from __future__ import annotations

import torch

from videodirector_cli.diffusion.attention.controller import (
    EDIT_COND,
    EDIT_UNCOND,
    REC_COND,
    REC_UNCOND,
    EditController,
    rows_view,
)
from videodirector_cli.diffusion.attention.projection import finish, project_qkv, sdpa


def controlled_maps(
    source_maps: torch.Tensor, edit_maps: torch.Tensor, controller: EditController
) -> torch.Tensor:
    """The edit row's controlled cross-attention probabilities (..., queries, tokens)."""
    maps = edit_maps
    if controller.mapping is not None:
        maps = controller.mapping.apply(source_maps, edit_maps)
    if controller.reweight is not None:
        maps = maps * controller.reweight.to(device=maps.device, dtype=maps.dtype)
    return maps


class CrossControlProcessor:
    """Cross-attention processor for the editing batch."""

    def __init__(self, controller: EditController) -> None:
        self.controller = controller

    def __call__(
        self,
        attn,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args,
        **kwargs,
    ) -> torch.Tensor:
        control = self.controller
        control.check_batch(hidden_states.shape[0])
        q, k, v = project_qkv(attn, hidden_states, encoder_hidden_states)
        if not control.cross_active:
            return finish(attn, sdpa(q, k, v, attn.scale), hidden_states)
        control.note("cross")
        qr, kr, vr = rows_view(q), rows_view(k), rows_view(v)
        out = torch.empty_like(qr)
        uncond = [EDIT_UNCOND, REC_UNCOND]
        out[uncond] = sdpa(
            qr[uncond].flatten(0, 1), kr[uncond].flatten(0, 1), vr[uncond].flatten(0, 1), attn.scale
        ).view_as(out[uncond])
        cond = [EDIT_COND, REC_COND]
        scores = (qr[cond].float() @ kr[cond].float().transpose(-1, -2)) * attn.scale
        probs = scores.softmax(dim=-1)
        edit_maps = controlled_maps(probs[1], probs[0], control)
        out[EDIT_COND] = (edit_maps @ vr[EDIT_COND].float()).to(out.dtype)
        out[REC_COND] = (probs[1] @ vr[REC_COND].float()).to(out.dtype)
        return finish(attn, out.view_as(q), hidden_states)
