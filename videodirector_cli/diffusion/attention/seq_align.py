"""Which cross-attention token of the edit prompt takes its map from which token of the source.

Prompt-to-prompt edits the cross-attention maps of the edit prompt's tokens: a token shared with
the source prompt takes the source's map, a new token keeps its own. Everything here works on the
model's own tokenizer, because a word can be several tokens (BPE) and punctuation is split off
("bear," is "bear</w>" + ",</w>" in CLIP).

A ``TokenMapping`` is a (L, L) matrix M plus per-target-token weights alpha (L = the tokenizer's
max length): the controlled map of the edit row is ``alpha * (A_src @ M) + (1 - alpha) * A_edit``.

- word swap (``replace_mapping``): prompts with the same number of words; differing words map
  their tokens onto each other (one to one when the token counts agree, otherwise each target
  token gets the source word's maps summed and divided by the target's token count);
- refinement (``refine_mapping``): a global alignment of the two token sequences; aligned tokens
  take the source map, inserted ones keep their own;
- reweighting (``reweight_vector``): a per-token scale for chosen words of the edit prompt.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

import torch

from videodirector_cli.errors import UsageError

_PUNCTUATION = string.punctuation + "“”‘’«»…"


@dataclass(frozen=True)
class TokenizedPrompt:
    """A prompt as the text encoder sees it, with the word each token came from."""

    text: str
    words: tuple[str, ...]
    """Whitespace-separated words, as typed."""
    ids: tuple[int, ...]
    """Token ids with the start and end tokens, without padding."""
    word_of_token: tuple[int, ...]
    """For each position of ``ids``: the index in ``words``, or -1 for start/end tokens."""
    core_of_token: tuple[bool, ...]
    """For each position: True when the token belongs to the word proper, not its punctuation."""
    max_len: int

    def word_positions(self, index: int, core_only: bool = True) -> list[int]:
        """Token positions (in the padded sequence, start token at 0) of word ``index``."""
        return [
            pos
            for pos, (w, core) in enumerate(zip(self.word_of_token, self.core_of_token))
            if w == index and (core or not core_only)
        ]

    def word_segments(self, index: int) -> tuple[list[int], list[int], list[int]]:
        """Positions of word ``index`` split into leading punctuation, the word, trailing."""
        lead: list[int] = []
        core: list[int] = []
        trail: list[int] = []
        for pos in self.word_positions(index, core_only=False):
            if self.core_of_token[pos]:
                core.append(pos)
            else:
                (trail if core else lead).append(pos)
        return lead, core, trail


def normalise_word(word: str) -> str:
    """Lower case without surrounding punctuation: 'Bear,' and 'bear' are the same word."""
    return word.strip(_PUNCTUATION).lower()


def _ids(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False).input_ids)


def tokenize_prompt(tokenizer, text: str) -> TokenizedPrompt:
    """Tokenise ``text`` word by word; raise UsageError when it exceeds the tokenizer's length."""
    max_len = int(tokenizer.model_max_length)
    words = tuple(text.split())
    body: list[int] = []
    word_of: list[int] = []
    core_of: list[bool] = []
    for index, word in enumerate(words):
        word_ids = _ids(tokenizer, word)
        core = normalise_word(word)
        core_ids = _ids(tokenizer, core) if core else []
        start = _find_run(word_ids, core_ids) if core_ids else -1
        body.extend(word_ids)
        word_of.extend([index] * len(word_ids))
        if start < 0:
            core_of.extend([bool(core)] * len(word_ids))
        else:
            core_of.extend(start <= k < start + len(core_ids) for k in range(len(word_ids)))
    whole = _ids(tokenizer, text)
    if whole != body:
        # A tokenizer whose pre-tokenisation crosses whitespace: fall back to the whole prompt and
        # give up on word positions (word-level controls then report the word as missing).
        body, word_of, core_of = whole, [-2] * len(whole), [False] * len(whole)
    ids = (int(tokenizer.bos_token_id), *body, int(tokenizer.eos_token_id))
    if len(ids) > max_len:
        raise UsageError(
            f"the prompt is {len(ids)} tokens long; the text encoder reads at most {max_len}",
            hint="shorten the prompt",
        )
    return TokenizedPrompt(
        text=text,
        words=words,
        ids=ids,
        word_of_token=(-1, *word_of, -1),
        core_of_token=(False, *core_of, False),
        max_len=max_len,
    )


def _find_run(haystack: list[int], needle: list[int]) -> int:
    for start in range(len(haystack) - len(needle) + 1):
        if haystack[start : start + len(needle)] == needle:
            return start
    return -1


def word_token_positions(prompt: TokenizedPrompt, word: str) -> list[int]:
    """Positions of every occurrence of ``word`` (a single word or a phrase) in ``prompt``.

    Matching ignores case and surrounding punctuation; raises UsageError when it is absent.
    """
    wanted = [normalise_word(w) for w in word.split()]
    if not wanted or not all(wanted):
        raise UsageError(f"'{word}' is not a word")
    have = [normalise_word(w) for w in prompt.words]
    positions: list[int] = []
    for start in range(len(have) - len(wanted) + 1):
        if have[start : start + len(wanted)] == wanted:
            for index in range(start, start + len(wanted)):
                positions.extend(prompt.word_positions(index))
    if not positions:
        raise UsageError(
            f"'{word}' is not a word of the prompt '{prompt.text}'",
            hint="--reweight names a word of the edit prompt, e.g. --reweight tiger=2",
        )
    return sorted(set(positions))


@dataclass(frozen=True)
class TokenMapping:
    """controlled = alpha * (source_maps @ matrix) + (1 - alpha) * own_maps, over the last axis."""

    matrix: torch.Tensor
    """(L, L) float32; matrix[s, t] is how much source token s feeds target token t."""
    alphas: torch.Tensor
    """(L,) float32; 1 where the target token takes the source's map, 0 where it keeps its own."""
    kind: str

    def apply(self, source_maps: torch.Tensor, own_maps: torch.Tensor) -> torch.Tensor:
        matrix = self.matrix.to(device=source_maps.device, dtype=source_maps.dtype)
        alphas = self.alphas.to(device=source_maps.device, dtype=source_maps.dtype)
        return alphas * (source_maps @ matrix) + (1 - alphas) * own_maps


def _tail_pairs(source: TokenizedPrompt, target: TokenizedPrompt) -> list[tuple[int, int]]:
    """End token to end token, then padding to padding in order, while both exist."""
    pairs = []
    s, t = len(source.ids) - 1, len(target.ids) - 1
    while s < source.max_len and t < target.max_len:
        pairs.append((s, t))
        s, t = s + 1, t + 1
    return pairs


def _mapping_from_pairs(
    pairs: list[tuple[int, int, float]], max_len: int, kind: str
) -> TokenMapping:
    matrix = torch.zeros(max_len, max_len)
    for s, t, weight in pairs:
        matrix[s, t] = weight
    alphas = (matrix.sum(dim=0) > 0).to(torch.float32)
    return TokenMapping(matrix, alphas, kind)


def word_count_mismatch(source: str, target: str) -> str | None:
    """Why a word swap cannot pair these prompts, or None when it can."""
    a, b = source.split(), target.split()
    if len(a) == len(b):
        return None
    return (
        f"a word swap pairs the words one to one, but the source prompt has {len(a)} words and "
        f"the edit prompt {len(b)}"
    )


def replace_mapping(source: TokenizedPrompt, target: TokenizedPrompt) -> TokenMapping:
    """Word swap: word k of the target takes the maps of word k of the source."""
    problem = word_count_mismatch(source.text, target.text)
    if problem:
        raise UsageError(problem, hint="use --mode refine (or auto) for inserted or removed words")
    pairs: list[tuple[int, int, float]] = [(0, 0, 1.0)]
    for index in range(len(source.words)):
        src_parts = source.word_segments(index)
        dst_parts = target.word_segments(index)
        if (len(src_parts[0]), len(src_parts[2])) != (len(dst_parts[0]), len(dst_parts[2])):
            # Different punctuation around the words: treat each word as one piece.
            src_parts = ([], source.word_positions(index, core_only=False), [])
            dst_parts = ([], target.word_positions(index, core_only=False), [])
        for src, dst in zip(src_parts, dst_parts):
            if len(src) == len(dst):
                pairs.extend((s, t, 1.0) for s, t in zip(src, dst))
            elif dst:
                pairs.extend((s, t, 1.0 / len(dst)) for s in src for t in dst)
    pairs.extend((s, t, 1.0) for s, t in _tail_pairs(source, target))
    return _mapping_from_pairs(pairs, source.max_len, "replace")


def global_alignment(a: tuple[int, ...], b: tuple[int, ...]) -> list[tuple[int, int]]:
    """Matched index pairs (i, j) of a best global alignment of ``a`` and ``b``.

    Scores: match +1, gap 0, mismatch never chosen (a mismatch scores below two gaps), which makes
    it a longest common subsequence. Ties prefer matching as early in ``b`` as possible.
    """
    n, m = len(a), len(b)
    score = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n - 1, -1, -1):
        for j in range(m - 1, -1, -1):
            if a[i] == b[j]:
                score[i][j] = score[i + 1][j + 1] + 1
            else:
                score[i][j] = max(score[i + 1][j], score[i][j + 1])
    pairs = []
    i = j = 0
    while i < n and j < m:
        if a[i] == b[j] and score[i][j] == score[i + 1][j + 1] + 1:
            pairs.append((i, j))
            i, j = i + 1, j + 1
        elif score[i + 1][j] >= score[i][j + 1]:
            i += 1
        else:
            j += 1
    return pairs


def refine_mapping(source: TokenizedPrompt, target: TokenizedPrompt) -> TokenMapping:
    """Refinement: tokens of the target aligned to the source take its maps; new ones keep theirs.

    The alignment runs over the tokens with the start and end tokens; padding is paired after
    the end tokens in order.
    """
    pairs = [(s, t, 1.0) for s, t in global_alignment(source.ids, target.ids)]
    pairs.extend((s, t, 1.0) for s, t in _tail_pairs(source, target)[1:])
    return _mapping_from_pairs(pairs, source.max_len, "refine")


def reweight_vector(prompt: TokenizedPrompt, weights: dict[str, float]) -> torch.Tensor:
    """(L,) scale per token: ``weights[word]`` on the word's tokens, 1 elsewhere."""
    vector = torch.ones(prompt.max_len)
    for word, value in weights.items():
        for pos in word_token_positions(prompt, word):
            vector[pos] = float(value)
    return vector


def choose_mode(mode: str, source: str, target: str) -> str:
    """'auto' is a word swap when word counts match and some word differs, else refinement."""
    if mode in ("replace", "refine"):
        return mode
    if mode != "auto":
        raise UsageError(f"unknown --mode {mode!r}", hint="auto, replace or refine")
    a, b = source.split(), target.split()
    if len(a) == len(b) and a != b:
        return "replace"
    return "refine"


def token_mapping(tokenizer, source: str, target: str, mode: str) -> TokenMapping:
    resolved = choose_mode(mode, source, target)
    src, dst = tokenize_prompt(tokenizer, source), tokenize_prompt(tokenizer, target)
    return replace_mapping(src, dst) if resolved == "replace" else refine_mapping(src, dst)
