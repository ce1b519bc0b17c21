"""Word-to-token mappings through the tiny model's tokenizer, against hand-worked examples.

The tiny tokenizer is character level: 'cat' is c, a, t</w> (3 tokens), punctuation is its own
token, and the start/end markers are ids 0 and 1. Position 0 is always the start marker.
"""

from __future__ import annotations

import pytest
import torch

from videodirector_cli.diffusion.attention import seq_align
from videodirector_cli.diffusion.tiny import build_tiny_tokenizer
from videodirector_cli.errors import UsageError


@pytest.fixture(scope="module")
def tok():
    return build_tiny_tokenizer()


def columns(mapping: seq_align.TokenMapping, upto: int) -> list[int | None]:
    """For target positions < upto: the single source position feeding it, or None."""
    out: list[int | None] = []
    for t in range(upto):
        col = mapping.matrix[:, t]
        out.append(int(col.argmax()) if float(col.sum()) > 0 else None)
    return out


def test_word_positions_ignore_case_and_punctuation(tok):
    prompt = seq_align.tokenize_prompt(tok, "A Tiger, walking")
    # 0 <s>, 1 a</w>, 2-6 t i g e r</w>, 7 ,</w>, 8-14 walking, 15 </s>
    assert seq_align.word_token_positions(prompt, "tiger") == [2, 3, 4, 5, 6]
    assert seq_align.word_token_positions(prompt, "TIGER,") == [2, 3, 4, 5, 6]
    assert seq_align.word_token_positions(prompt, "tiger walking") == [2, 3, 4, 5, 6, *range(8, 15)]
    assert len(prompt.ids) == 16
    with pytest.raises(UsageError, match="not a word of the prompt"):
        seq_align.word_token_positions(prompt, "bear")


def test_prompt_longer_than_the_encoder_is_refused(tok):
    seq_align.tokenize_prompt(tok, "x" * 75)  # 75 + 2 markers = 77: fits
    with pytest.raises(UsageError, match="78 tokens"):
        seq_align.tokenize_prompt(tok, "x" * 76)


def test_replace_same_token_count_is_one_to_one(tok):
    src = seq_align.tokenize_prompt(tok, "a cat")
    dst = seq_align.tokenize_prompt(tok, "a dog")
    mapping = seq_align.replace_mapping(src, dst)
    assert torch.equal(mapping.matrix, torch.eye(77))
    assert torch.equal(mapping.alphas, torch.ones(77))


def test_replace_different_token_counts_spreads_the_word(tok):
    # source: 0 <s>, 1 a</w>, 2 c, 3 a, 4 t</w>, 5 .</w>, 6 </s>, 7.. padding
    # target: 0 <s>, 1 a</w>, 2 t, 3 i, 4 g, 5 e, 6 r</w>, 7 .</w>, 8 </s>, 9.. padding
    src = seq_align.tokenize_prompt(tok, "a cat.")
    dst = seq_align.tokenize_prompt(tok, "a tiger.")
    m = seq_align.replace_mapping(src, dst).matrix
    expected = torch.zeros(77, 77)
    expected[0, 0] = expected[1, 1] = 1
    expected[2:5, 2:7] = 1 / 5  # each 'tiger' token: the 'cat' maps summed, over 5
    expected[5, 7] = 1  # '.' -> '.'
    for k in range(77 - 8):  # end marker and padding, in order
        expected[6 + k, 8 + k] = 1
    assert torch.allclose(m, expected)


def test_replace_refuses_different_word_counts(tok):
    src = seq_align.tokenize_prompt(tok, "a cat")
    dst = seq_align.tokenize_prompt(tok, "a big cat")
    with pytest.raises(UsageError, match=r"2 words .* 3") as info:
        seq_align.replace_mapping(src, dst)
    assert "refine" in (info.value.hint or "")


def test_refine_insertion(tok):
    # source <s> a</w> c a t</w> </s>; target <s> a</w> b i g</w> c a t</w> </s>
    src = seq_align.tokenize_prompt(tok, "a cat")
    dst = seq_align.tokenize_prompt(tok, "a big cat")
    mapping = seq_align.refine_mapping(src, dst)
    assert columns(mapping, 12) == [0, 1, None, None, None, 2, 3, 4, 5, 6, 7, 8]
    assert mapping.alphas[:12].tolist() == [1, 1, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1]
    assert columns(mapping, 77)[76] == 73  # padding pairs with padding, shifted by 3
    assert torch.equal(mapping.matrix.sum(dim=0), mapping.alphas)  # one-hot or empty columns


def test_refine_removal(tok):
    src = seq_align.tokenize_prompt(tok, "a big cat")
    dst = seq_align.tokenize_prompt(tok, "a cat")
    mapping = seq_align.refine_mapping(src, dst)
    assert columns(mapping, 7) == [0, 1, 5, 6, 7, 8, 9]
    # the last 3 target padding positions have no source padding left: they keep their own maps
    assert mapping.alphas[74:].tolist() == [0, 0, 0]
    assert mapping.alphas[:74].tolist() == [1] * 74


def test_refine_of_identical_prompts_is_identity(tok):
    src = seq_align.tokenize_prompt(tok, "a brown bear, walking.")
    mapping = seq_align.refine_mapping(src, src)
    assert torch.equal(mapping.matrix, torch.eye(77))
    assert torch.equal(mapping.alphas, torch.ones(77))


def test_global_alignment_hand_worked():
    assert seq_align.global_alignment((1, 2, 3, 4), (1, 3, 5, 4)) == [(0, 0), (2, 1), (3, 3)]
    assert seq_align.global_alignment((7, 8, 9), (9, 7, 8)) == [(0, 1), (1, 2)]
    assert seq_align.global_alignment((), (1,)) == []


def test_reweight_vector_scales_only_the_chosen_tokens(tok):
    prompt = seq_align.tokenize_prompt(tok, "a white tiger")
    vector = seq_align.reweight_vector(prompt, {"tiger": 2.0, "white": 0.5})
    expected = torch.ones(77)
    expected[2:7] = 0.5  # w h i t e</w>
    expected[7:12] = 2.0  # t i g e r</w>
    assert torch.equal(vector, expected)
    with pytest.raises(UsageError):
        seq_align.reweight_vector(prompt, {"bear": 2.0})


def test_mapping_apply_blends_source_and_own_maps(tok):
    src = seq_align.tokenize_prompt(tok, "a cat")
    dst = seq_align.tokenize_prompt(tok, "a big cat")
    mapping = seq_align.refine_mapping(src, dst)
    source_maps = torch.rand(3, 5, 77)
    own_maps = torch.rand(3, 5, 77)
    out = mapping.apply(source_maps, own_maps)
    assert torch.equal(out[..., 2:5], own_maps[..., 2:5])  # 'big' keeps its own maps
    assert torch.equal(out[..., 5:9], source_maps[..., 2:6])  # 'cat' and </s> take the source's


def test_choose_mode():
    assert seq_align.choose_mode("auto", "a bear walking", "a tiger walking") == "replace"
    assert seq_align.choose_mode("auto", "a bear walking", "a big tiger walking") == "refine"
    assert seq_align.choose_mode("auto", "a bear", "a bear") == "refine"
    assert seq_align.choose_mode("refine", "a bear", "a cat") == "refine"
    with pytest.raises(UsageError):
        seq_align.choose_mode("swap", "a", "b")
