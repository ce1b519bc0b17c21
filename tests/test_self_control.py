"""SA-I and SA-II processors against explicit-softmax references, on a lone attention module."""

from __future__ import annotations

import pytest
import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from videodirector_cli.diffusion.attention.controller import (
    EditController,
    edit_attention,
    layer_grid,
    parse_layer_spec,
)
from videodirector_cli.diffusion.attention.layers import attention_layers, layers_of
from videodirector_cli.diffusion.attention.self_control import SelfControlProcessor
from videodirector_cli.errors import UsageError
from videodirector_cli.settings.edit import EditSettings

FRAMES, HW, CHANNELS, HEADS = 2, (4, 4), 16, 2
TOKENS = HW[0] * HW[1]


@pytest.fixture
def attn() -> Attention:
    torch.manual_seed(0)
    return Attention(query_dim=CHANNELS, heads=HEADS, dim_head=CHANNELS // HEADS).eval()


def hidden(seed: int = 1) -> torch.Tensor:
    return torch.randn(4 * FRAMES, TOKENS, CHANNELS, generator=torch.Generator().manual_seed(seed))


def controller(step: int, steps: int = 10, masks=None, **settings) -> EditController:
    control = EditController(EditSettings(**settings), FRAMES, HW, masks=masks)
    control.set_step(step, steps)
    return control


def heads(attn: Attention, x: torch.Tensor) -> torch.Tensor:
    b, n, c = x.shape
    return x.view(b, n, attn.heads, c // attn.heads).transpose(1, 2)


def explicit(attn: Attention, q, k, v, bias=None) -> torch.Tensor:
    scores = q @ k.transpose(-1, -2) * attn.scale
    if bias is not None:
        scores = scores + bias
    return scores.softmax(-1) @ v


def merge(attn: Attention, out: torch.Tensor) -> torch.Tensor:
    b, h, n, d = out.shape
    return attn.to_out[0](out.transpose(1, 2).reshape(b, n, h * d))


def rows(x: torch.Tensor) -> list[torch.Tensor]:
    return list(x.view(4, FRAMES, *x.shape[1:]))


def test_sa1_equals_explicit_softmax_reference(attn):
    x = hidden()
    with torch.no_grad():
        out = SelfControlProcessor(controller(step=0), sa2_layer=True)(attn, x)
        q, k, v = (heads(attn, f(x)) for f in (attn.to_q, attn.to_k, attn.to_v))
        qs, ks, vs = rows(q), rows(k), rows(v)
        expected = [
            explicit(attn, qs[0], ks[0], vs[0]),
            explicit(attn, qs[3], ks[3], vs[1]),  # reconstruction's map, edit's values
            explicit(attn, qs[2], ks[2], vs[2]),
            explicit(attn, qs[3], ks[3], vs[3]),
        ]
        expected_out = merge(attn, torch.cat(expected))
    assert torch.allclose(out, expected_out, atol=1e-5)
    # and the edit row really differs from plain attention (the control did something)
    plain = AttnProcessor2_0()(attn, x)
    assert not torch.allclose(rows(out)[1], rows(plain)[1], atol=1e-3)
    assert torch.allclose(torch.cat(rows(out)[2:]), torch.cat(rows(plain)[2:]), atol=1e-5)


def test_sa1_skips_layers_with_too_many_tokens(attn):
    x = hidden()
    with torch.no_grad():
        control = controller(step=0, sa1_max_tokens=TOKENS - 1)
        out = SelfControlProcessor(control, sa2_layer=True)(attn, x)
        plain = AttnProcessor2_0()(attn, x)
    assert torch.allclose(out, plain, atol=1e-5)
    assert control.applied["sa1"] == 0


def box_masks() -> torch.Tensor:
    masks = torch.zeros(FRAMES, 8, 8, dtype=torch.bool)  # frame resolution 2x the layer's
    masks[0, 0:4, 0:4] = True
    masks[1, 2:8, 4:8] = True
    return masks


def test_sa2_matches_explicit_reference_with_minus_inf_mask(attn):
    x, masks = hidden(), box_masks()
    control = controller(step=9, masks=masks)
    with torch.no_grad():
        out = SelfControlProcessor(control, sa2_layer=True)(attn, x)
        q, k, v = (heads(attn, f(x)) for f in (attn.to_q, attn.to_k, attn.to_v))
        qs, ks, vs = rows(q), rows(k), rows(v)
        fg = control.foreground(TOKENS, x.device)  # (F, tokens)
        bias = torch.zeros(FRAMES, 1, 1, 2 * TOKENS)
        bias[:, 0, 0, TOKENS:][fg] = float("-inf")
        expected = [
            explicit(attn, qs[e], torch.cat([ks[e], ks[r]], 2), torch.cat([vs[e], vs[r]], 2), bias)
            for e, r in ((0, 2), (1, 3))
        ] + [explicit(attn, qs[r], ks[r], vs[r]) for r in (2, 3)]
        expected_out = merge(attn, torch.cat(expected))
    assert torch.allclose(out, expected_out, atol=1e-5)
    assert control.applied["sa2"] == 1


def test_foreground_is_the_mask_at_the_layer_grid():
    control = controller(step=9, masks=box_masks())
    fg = control.foreground(TOKENS, torch.device("cpu")).view(FRAMES, 4, 4)
    expected = torch.zeros(FRAMES, 4, 4, dtype=torch.bool)
    expected[0, 0:2, 0:2] = True
    expected[1, 1:4, 2:4] = True
    assert torch.equal(fg, expected)
    assert layer_grid(16, (8, 8)) == (4, 4)
    assert layer_grid(6, (5, 9)) == (2, 3)  # halving rounds up, like strided convolutions


def perturb_rec(x: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """Change the reconstruction rows' hidden states at token positions ``where`` (F, tokens)."""
    y = x.clone().view(4, FRAMES, TOKENS, CHANNELS)
    noise = torch.randn(2, FRAMES, TOKENS, CHANNELS, generator=torch.Generator().manual_seed(5))
    y[2:] = torch.where(where[None, :, :, None], y[2:] + 3 * noise, y[2:])
    return y.view_as(x)


def test_sa2_ignores_reconstruction_inside_the_mask_and_reads_it_outside(attn):
    x, masks = hidden(), box_masks()
    control = controller(step=9, masks=masks)
    fg = control.foreground(TOKENS, x.device)
    processor = SelfControlProcessor(control, sa2_layer=True)
    with torch.no_grad():
        base = rows(processor(attn, x))
        inside = rows(processor(attn, perturb_rec(x, fg)))
        outside = rows(processor(attn, perturb_rec(x, ~fg)))
    for row in (0, 1):  # both edit rows
        assert torch.allclose(inside[row], base[row], atol=1e-6)
        assert (outside[row] - base[row]).abs().max() > 1e-2


def test_sa2_without_mask_and_equal_rows_is_plain_attention(attn):
    one = torch.randn(2 * FRAMES, TOKENS, CHANNELS, generator=torch.Generator().manual_seed(3))
    x = torch.cat([one, one])  # edit rows == reconstruction rows (editing with the source prompt)
    with torch.no_grad():
        out = SelfControlProcessor(controller(step=9), sa2_layer=True)(attn, x)
        plain = AttnProcessor2_0()(attn, x)
    assert torch.allclose(out, plain, atol=1e-5)


def test_phases_follow_the_step_told_by_the_loop():
    control = EditController(
        EditSettings(tau_s=0.4, tau_c=0.8), FRAMES, HW, reweight=torch.ones(77)
    )
    phases = []
    for step in range(50):
        control.set_step(step, 50)
        phases.append((control.sa1_active, control.sa2_active, control.cross_active))
    assert [p[0] for p in phases] == [True] * 20 + [False] * 30
    assert [p[1] for p in phases] == [False] * 20 + [True] * 30
    assert [p[2] for p in phases] == [True] * 40 + [False] * 10
    off = EditController(EditSettings(sa1=False, sa2=False, cross=False), FRAMES, HW)
    off.set_step(0, 50)
    assert not (off.sa1_active or off.sa2_active or off.cross_active)


def sd15_spatial_names() -> list[str]:
    names = []
    for block, count in (("down_blocks.0", 2), ("down_blocks.1", 2), ("down_blocks.2", 2)):
        names += [
            f"{block}.attentions.{i}.transformer_blocks.0.attn1.processor" for i in range(count)
        ]
    names.append("mid_block.attentions.0.transformer_blocks.0.attn1.processor")
    for block in ("up_blocks.1", "up_blocks.2", "up_blocks.3"):
        names += [f"{block}.attentions.{i}.transformer_blocks.0.attn1.processor" for i in range(3)]
    return names


def test_decoder_layers_are_the_references_7_to_15_in_sd15():
    layers = attention_layers(sd15_spatial_names())
    decoder = parse_layer_spec(layers, "decoder")
    assert [layer.order for layer in decoder] == list(range(7, 16))
    assert parse_layer_spec(layers, "7-15") == decoder
    assert [layer.order for layer in parse_layer_spec(layers, "0, up_blocks.3")] == [0, 13, 14, 15]
    assert parse_layer_spec(layers, "none") == []
    with pytest.raises(UsageError, match=r"up_blocks\.9"):
        parse_layer_spec(layers, "up_blocks.9")


def test_edit_attention_installs_and_restores_processors():
    from _helpers_editing import tiny_model

    unet = tiny_model().unet
    before = dict(unet.attn_processors)
    control = controller(step=0)
    with pytest.raises(RuntimeError, match="boom"), edit_attention(unet, control):
        now = unet.attn_processors
        spatial = [layer.name for layer in layers_of(unet, "spatial_self")]
        assert all(isinstance(now[name], SelfControlProcessor) for name in spatial)
        temporal = [layer.name for layer in layers_of(unet, "temporal")]
        assert all(now[name] is before[name] for name in temporal)
        raise RuntimeError("boom")
    assert all(unet.attn_processors[name] is proc for name, proc in before.items())
