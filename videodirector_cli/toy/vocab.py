"""The toy model's vocabulary and its CLIP tokenizer.

The tokenizer is a standard ``CLIPTokenizer`` (vocab.json + merges.txt): the 256 byte-level
characters (alone and with the end-of-word marker ``</w>``), the two specials, and every toy word
as a single token ("red</w>", "circle</w>", ...) reached through a chain of BPE merges. Unknown
text still tokenises (into characters), so any prompt can be fed to the model.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from .world import all_words

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
MAX_LENGTH = 77

#: Words beyond the captions' grammar, so simple paraphrases still hit whole-word tokens.
EXTRA_WORDS: tuple[str, ...] = (
    "the",
    "an",
    "of",
    "with",
    "object",
    "shape",
    "video",
    "small",
    "big",
)


def vocabulary_words() -> list[str]:
    words = all_words()
    for w in EXTRA_WORDS:
        if w not in words:
            words.append(w)
    return words


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable unicode character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def _bpe(symbols: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Plain BPE: repeatedly merge the adjacent pair with the lowest rank."""
    symbols = list(symbols)
    while len(symbols) > 1:
        pairs = [(ranks.get((a, b)), i) for i, (a, b) in enumerate(itertools.pairwise(symbols))]
        pairs = [(r, i) for r, i in pairs if r is not None]
        if not pairs:
            break
        rank, _ = min(pairs)
        pair = next((symbols[i], symbols[i + 1]) for r, i in pairs if r == rank)
        merged: list[str] = []
        i = 0
        while i < len(symbols):
            if i < len(symbols) - 1 and (symbols[i], symbols[i + 1]) == pair:
                merged.append(symbols[i] + symbols[i + 1])
                i += 2
            else:
                merged.append(symbols[i])
                i += 1
        symbols = merged
    return symbols


def _word_symbols(word: str) -> list[str]:
    b2u = bytes_to_unicode()
    chars = [b2u[b] for b in word.encode("utf-8")]
    return [*chars[:-1], chars[-1] + "</w>"]


def build_vocab_and_merges(
    words: list[str] | None = None,
) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """vocab (token -> id) and merges such that every word in ``words`` is one token."""
    words = vocabulary_words() if words is None else words
    b2u = bytes_to_unicode()
    chars = list(b2u.values())
    tokens: list[str] = chars + [c + "</w>" for c in chars]
    merges: list[tuple[str, str]] = []
    ranks: dict[tuple[str, str], int] = {}
    for word in words:
        while True:
            parts = _bpe(_word_symbols(word), ranks)
            if len(parts) == 1:
                break
            pair = (parts[0], parts[1])
            ranks[pair] = len(merges)
            merges.append(pair)
            new = pair[0] + pair[1]
            if new not in tokens:
                tokens.append(new)
    tokens += [BOS, EOS]
    vocab = {t: i for i, t in enumerate(tokens)}
    return vocab, merges


def build_tokenizer(words: list[str] | None = None):
    """An in-memory ``CLIPTokenizer`` for the toy vocabulary (model_max_length 77)."""
    from transformers import CLIPTokenizer

    vocab, merges = build_vocab_and_merges(words)
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=MAX_LENGTH)  # type: ignore[arg-type]


def save_tokenizer_files(directory: str | Path, words: list[str] | None = None) -> Path:
    """Write vocab.json, merges.txt, tokenizer_config.json and special_tokens_map.json.

    ``CLIPTokenizer.from_pretrained(directory)`` loads the result.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    vocab, merges = build_vocab_and_merges(words)
    (d / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in merges]
    (d / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    tok = build_tokenizer(words)
    tok.save_pretrained(str(d))
    return d
