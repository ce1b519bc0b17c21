"""Cross-attention control (word swap / refinement / reweighting) on a lone attention module."""

from __future__ import annotations

import pytest
import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from videodirector_cli.diffusion.attention import seq_align
from videodirector_cli.diffusion.attention.controller import EditController
from videodirector_cli.diffusion.attention.cross_control import (
    CrossControlProcessor,
    controlled_maps,
)
from videodirector_cli.diffusion.tiny import build_tiny_tokenizer
from videodirector_cli.settings.edit import EditSettings

FRAMES, HW, CHANNELS, CONTEXT, HEADS, L = 2, (4, 4), 16, 12, 2, 77
TOKENS = HW[0] * HW[1]


@pytest.fixture(scope="module")
def tok():
    return build_tiny_tokenizer()


@pytest.fixture
def attn() -> Attention:
    torch.manual_seed(0)
    return Attention(
        query_dim=CHANNELS, cross_attention_dim=CONTEXT, heads=HEADS, dim_head=CHANNELS // HEADS
    ).eval()


def inputs(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(4 * FRAMES, TOKENS, CHANNELS, generator=g), torch.randn(
        4 * FRAMES, L, CONTEXT, generator=g
    )


def controller(step, mapping=None, reweight=None, steps=10) -> EditController:
    control = EditController(
        EditSettings(tau_c=0.8), FRAMES, HW, mapping=mapping, reweight=reweight
    )
    control.set_step(step, steps)
    return control


def split(attn, x):
    b, n, c = x.shape
    return x.view(b, n, attn.heads, c // attn.heads).transpose(1, 2)


def rows(x):
    return list(x.view(4, FRAMES, *x.shape[1:]))


def probs(attn, q, k):
    return (q @ k.transpose(-1, -2) * attn.scale).softmax(-1)


def test_edit_row_gets_the_controlled_map_and_other_rows_are_plain(attn, tok):
    mapping = seq_align.refine_mapping(
        seq_align.tokenize_prompt(tok, "a cat"), seq_align.tokenize_prompt(tok, "a big cat")
    )
    weights = seq_align.reweight_vector(seq_align.tokenize_prompt(tok, "a big cat"), {"big": 2})
    control = controller(step=0, mapping=mapping, reweight=weights)
    x, ctx = inputs()
    with torch.no_grad():
        out = CrossControlProcessor(control)(attn, x, ctx)
        plain = AttnProcessor2_0()(attn, x, ctx)
        q = rows(split(attn, attn.to_q(x)))
        k = rows(split(attn, attn.to_k(ctx)))
        v = rows(split(attn, attn.to_v(ctx)))
        source, own = probs(attn, q[3], k[3]), probs(attn, q[1], k[1])
        maps = weights * (mapping.alphas * (source @ mapping.matrix) + (1 - mapping.alphas) * own)
        b, h, n, d = q[1].shape
        expected = attn.to_out[0]((maps @ v[1]).transpose(1, 2).reshape(b, n, h * d))
    got = rows(out)
    assert torch.allclose(got[1], expected, atol=1e-5)
    for row in (0, 2, 3):  # unconditional rows and the reconstruction: untouched
        assert torch.allclose(got[row], rows(plain)[row], atol=1e-5)
    assert control.applied["cross"] == 1


def test_after_tau_c_everything_is_plain_attention(attn, tok):
    mapping = seq_align.refine_mapping(
        seq_align.tokenize_prompt(tok, "a cat"), seq_align.tokenize_prompt(tok, "a big cat")
    )
    control = controller(step=8, mapping=mapping, reweight=torch.full((L,), 3.0))
    x, ctx = inputs()
    with torch.no_grad():
        out = CrossControlProcessor(control)(attn, x, ctx)
        plain = AttnProcessor2_0()(attn, x, ctx)
    assert torch.allclose(out, plain, atol=1e-5)
    assert control.applied["cross"] == 0


def test_reweighting_scales_exactly_the_chosen_tokens(tok):
    prompt = seq_align.tokenize_prompt(tok, "a white tiger")
    weights = seq_align.reweight_vector(prompt, {"tiger": 2.0})
    control = controller(step=0, mapping=None, reweight=weights)
    own = torch.rand(2, 3, 16, L)
    out = controlled_maps(torch.rand(2, 3, 16, L), own, control)
    chosen = seq_align.word_token_positions(prompt, "tiger")
    others = [i for i in range(L) if i not in chosen]
    assert torch.equal(out[..., chosen], own[..., chosen] * 2)
    assert torch.equal(out[..., others], own[..., others])


def test_word_swap_takes_the_source_maps_for_every_token(attn, tok):
    mapping = seq_align.replace_mapping(
        seq_align.tokenize_prompt(tok, "a cat"), seq_align.tokenize_prompt(tok, "a dog")
    )
    control = controller(step=0, mapping=mapping)
    source, own = torch.rand(2, 3, 16, L), torch.rand(2, 3, 16, L)
    assert torch.equal(controlled_maps(source, own, control), source)
