"""Prompt encoding: exact token counts, refusal instead of truncation, shapes on the model."""

from __future__ import annotations

import pytest
import torch

from videodirector_cli.diffusion.prompts import (
    check_prompt,
    encode_prompt,
    encode_prompts,
    token_count,
)
from videodirector_cli.errors import UsageError


@pytest.fixture
def model(tiny_model):
    """The session's tiny model (conftest.py)."""
    return tiny_model


def test_token_count_excludes_start_and_end_markers(model):
    # The tiny tokenizer is byte-level without merges: one token per character, spaces dropped.
    assert token_count(model.tokenizer, "") == 0
    assert token_count(model.tokenizer, "bear") == 4
    assert token_count(model.tokenizer, "a bear") == 5


def test_longest_prompt_that_fits_is_accepted_and_one_more_token_is_refused(model):
    limit = model.max_tokens - 2
    check_prompt(model.tokenizer, "x" * limit)
    with pytest.raises(UsageError) as info:
        check_prompt(model.tokenizer, "x" * (limit + 1))
    message = str(info.value)
    assert f"the prompt has {limit + 1} tokens" in message
    assert f"takes at most {limit} ({model.max_tokens} with its start and end markers)" in message
    assert "shorten it" in message


def test_encode_refuses_instead_of_truncating(model):
    with pytest.raises(UsageError, match="tokens"):
        encode_prompt(model, "y" * model.max_tokens)


def test_encode_prompt_shape_device_dtype(model):
    embedding = encode_prompt(model, "a bear walking")
    hidden = model.text_encoder.config.hidden_size
    assert embedding.shape == (1, model.max_tokens, hidden)
    assert embedding.dtype == model.dtype
    assert embedding.device == model.device
    assert not embedding.requires_grad


def test_batch_equals_single_and_prompts_differ(model):
    batch = encode_prompts(model, ["a bear", "", "a tiger"])
    assert batch.shape[0] == 3
    torch.testing.assert_close(batch[0:1], encode_prompt(model, "a bear"))
    torch.testing.assert_close(batch[1:2], encode_prompt(model, ""))
    assert not torch.allclose(batch[0], batch[2])


def test_padding_is_full_length_so_the_empty_prompt_is_the_usual_null(model):
    ids = model.tokenizer("", padding="max_length", max_length=model.max_tokens).input_ids
    assert len(ids) == model.max_tokens
    empty = encode_prompt(model, "")
    assert torch.isfinite(empty).all()


def test_encode_prompts_needs_text(model):
    with pytest.raises(ValueError):
        encode_prompts(model, [])
