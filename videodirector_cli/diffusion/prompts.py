"""Prompt text -> CLIP embeddings, refusing prompts that would be cut off.

CLIP's text encoder sees a fixed number of positions (77 for SD1.5, including the start and end
markers). diffusers truncates longer prompts with a log line most users never see; an edit whose
last words were silently dropped looks like the method failing, so vdir refuses instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from videodirector_cli.errors import UsageError

if TYPE_CHECKING:
    import torch

    from videodirector_cli.diffusion.components import DiffusionModel

SPECIAL_TOKENS = 2
"""The start-of-text and end-of-text markers CLIP adds around every prompt."""


def token_count(tokenizer: Any, text: str) -> int:
    """Number of tokens in ``text``, without the start/end markers."""
    ids = tokenizer(text, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
    return len(ids)


def check_prompt(tokenizer: Any, text: str, what: str = "the prompt") -> None:
    """Raise UsageError when ``text`` does not fit the text encoder (never truncate silently)."""
    limit = int(tokenizer.model_max_length)
    count = token_count(tokenizer, text)
    if count + SPECIAL_TOKENS > limit:
        raise UsageError(
            f"{what} has {count} tokens; the text encoder takes at most {limit - SPECIAL_TOKENS} "
            f"({limit} with its start and end markers); shorten it",
            hint="drop adjectives or filler words; the count is of CLIP tokens, not words",
        )


def _token_ids(model: DiffusionModel, texts: Sequence[str]) -> torch.Tensor:
    for text in texts:
        check_prompt(model.tokenizer, text)
    batch = model.tokenizer(
        list(texts),
        padding="max_length",
        max_length=model.max_tokens,
        truncation=False,
        return_tensors="pt",
    )
    return batch["input_ids"]


def encode_prompts(model: DiffusionModel, texts: Sequence[str]) -> torch.Tensor:
    """Embeddings (N, L, D) of ``texts`` on ``model.device`` in ``model.dtype``; L = max tokens.

    Padded to the full length, as the UNet was trained, so an empty prompt gives the usual
    unconditional embedding.
    """
    import torch

    if not texts:
        raise ValueError("encode_prompts needs at least one text")
    ids = _token_ids(model, texts)
    with torch.no_grad():  # on model.device: the encoder is there, or offloaded and on its way
        hidden = model.text_encoder(ids.to(model.device))[0]
    return hidden.to(device=model.device, dtype=model.dtype)


def encode_prompt(model: DiffusionModel, text: str) -> torch.Tensor:
    """Embedding (1, L, D) of one prompt; see encode_prompts."""
    return encode_prompts(model, [text])
