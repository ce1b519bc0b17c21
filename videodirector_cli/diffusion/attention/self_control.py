"""Self-attention control of the edit path (paper 3.3, SA-I and SA-II).

SA-I (first tau_s of the steps, layers with at most 32x32 tokens): the edit's conditional row
uses the reconstruction's attention map over its own values,
``softmax(Q_rec K_rec^T / sqrt d) V_edit``. That is scaled-dot-product attention with the
reconstruction's queries and keys and the edit's values, so one SDPA call over all rows does it,
with no explicit map.

SA-II (the remaining steps, the chosen decoder layers): each edit row (unconditional and
conditional, as the reference does) attends to ``[edit keys | reconstruction keys]`` with
``[edit values | reconstruction values]``; reconstruction keys inside the edited region are
excluded (a boolean SDPA mask, the same as adding -inf), so original content does not leak into
it. Without a mask every reconstruction key takes part.
"""

from __future__ import annotations

import torch

from videodirector_cli.diffusion.attention.controller import (
    EDIT_COND,
    REC_COND,
    EditController,
    rows_view,
)
from videodirector_cli.diffusion.attention.projection import finish, project_qkv, sdpa


def sa1_attention(q, k, v, scale: float) -> torch.Tensor:
    """All rows plain, except the edit's conditional row: softmax(Q_rec K_rec^T) V_edit."""
    q_rows, k_rows = rows_view(q).clone(), rows_view(k).clone()
    q_rows[EDIT_COND] = q_rows[REC_COND]
    k_rows[EDIT_COND] = k_rows[REC_COND]
    return sdpa(q_rows.view_as(q), k_rows.view_as(k), v, scale)


def sa2_attention(q, k, v, scale: float, foreground: torch.Tensor | None) -> torch.Tensor:
    """Reconstruction rows plain; edit rows attend to [edit | reconstruction] keys and values.

    ``foreground``: (F, tokens) bool, True where the reconstruction key is masked out.
    """
    half = q.shape[0] // 2
    edit_q = q[:half]
    keys = torch.cat([k[:half], k[half:]], dim=2)
    values = torch.cat([v[:half], v[half:]], dim=2)
    mask = None
    if foreground is not None:
        frames, tokens = foreground.shape
        allowed = torch.cat([torch.ones_like(foreground), ~foreground], dim=1)
        mask = allowed.repeat(half // frames, 1).view(half, 1, 1, 2 * tokens)
    edit_out = sdpa(edit_q, keys, values, scale, mask)
    rec_out = sdpa(q[half:], k[half:], v[half:], scale)
    return torch.cat([edit_out, rec_out])


class SelfControlProcessor:
    """Spatial self-attention processor for the editing batch (SA-I / SA-II / plain)."""

    def __init__(self, controller: EditController, sa2_layer: bool) -> None:
        self.controller = controller
        self.sa2_layer = sa2_layer

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
        q, k, v = project_qkv(attn, hidden_states)
        tokens = q.shape[2]
        if control.sa1_active and tokens <= control.settings.sa1_max_tokens:
            control.note("sa1")
            out = sa1_attention(q, k, v, attn.scale)
        elif control.sa2_active and self.sa2_layer:
            control.note("sa2")
            out = sa2_attention(q, k, v, attn.scale, control.foreground(tokens, q.device))
        else:
            out = sdpa(q, k, v, attn.scale)
        return finish(attn, out, hidden_states)
