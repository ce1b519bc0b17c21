"""Stage "latents": the training pool encoded by the VAE once, cached in the work folder.

The denoiser stages never run the VAE: each of their steps indexes this cache (posterior means
times ``scaling_factor``; the posterior is nearly deterministic, ``configs.build_vae``). The
cache is keyed by a fingerprint of the encoder's weights and of the pool's settings, so a
retrained VAE or another pool rebuilds it instead of training on stale latents. It lives in the
work folder only, never in git (about 32 KB per clip in float16).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from . import configs, vocab, world
from .training import StageClock, atomic_save, load_checkpoint, log, option


@dataclass
class PoolSettings:
    """The training pool: which clips the denoiser learns from."""

    train_seeds: int = option(8000, "clip seeds 0..N-1 are the training pool")
    p_second: float = option(0.1, "probability of a second object in a training clip")


@dataclass
class LatentPool:
    """Every training clip as latents, with its caption's token ids."""

    latents: torch.Tensor  # (N, C, F, h, w) float16, already times scaling_factor
    ids: torch.Tensor  # (N, 77) int64 token ids of each clip's caption
    empty_ids: torch.Tensor  # (77,) token ids of the empty prompt (caption dropout)
    captions: list[str]

    def __len__(self) -> int:
        return int(self.latents.shape[0])


def fingerprint(vae, settings: PoolSettings) -> str:
    """What the cache depends on: the encoder's weights, the scaling and the pool settings."""
    h = hashlib.sha256(repr(sorted(asdict(settings).items())).encode())
    h.update(repr(float(vae.config.scaling_factor)).encode())
    for part in (vae.encoder, vae.quant_conv):
        for key, value in part.state_dict().items():
            h.update(key.encode())
            h.update(value.detach().cpu().float().numpy().tobytes())
    return h.hexdigest()


def token_ids(tokenizer, captions: list[str]) -> torch.Tensor:
    return tokenizer(
        captions,
        padding="max_length",
        max_length=vocab.MAX_LENGTH,
        truncation=True,
        return_tensors="pt",
    ).input_ids


@torch.no_grad()
def encode_pool(vae, tokenizer, settings: PoolSettings, batch_clips: int = 8) -> LatentPool:
    """Generate and encode clips 0..train_seeds-1 (held-out combinations excluded)."""
    vae = vae.eval()
    dev = next(vae.parameters()).device
    scale = float(vae.config.scaling_factor)
    chunks, captions = [], []
    for start in range(0, settings.train_seeds, batch_clips):
        clips = [
            world.make_clip(s, frames=configs.NUM_FRAMES, p_second=settings.p_second, split="train")
            for s in range(start, min(start + batch_clips, settings.train_seeds))
        ]
        x = torch.from_numpy(np.concatenate([c.frames for c in clips]))
        x = x.to(dev).float().permute(0, 3, 1, 2) / 127.5 - 1.0
        z = vae.encode(x).latent_dist.mean * scale  # (n * F, C, h, w)
        z = z.unflatten(0, (len(clips), configs.NUM_FRAMES)).permute(0, 2, 1, 3, 4)
        chunks.append(z.to("cpu", torch.float16))
        captions += [c.caption for c in clips]
        if (start // batch_clips) % 100 == 0:
            log(f"[latents {start + len(clips)}/{settings.train_seeds}]")
    ids = token_ids(tokenizer, captions)
    return LatentPool(torch.cat(chunks), ids, token_ids(tokenizer, [""])[0], captions)


def load_or_build(path: Path, vae, tokenizer, settings: PoolSettings) -> tuple[LatentPool, dict]:
    """The cached pool if it matches this VAE and these settings, else a freshly encoded one.
    Returns the pool and its record (fingerprint, clips, CPU and wall seconds)."""
    key = fingerprint(vae, settings)
    st = load_checkpoint(path)
    if st is not None and st["fingerprint"] == key:
        pool = LatentPool(st["latents"], st["ids"], st["empty_ids"], st["captions"])
        return pool, st["record"]
    if st is not None:
        log(f"{path.name}: VAE or pool settings changed, encoding the pool again")
    clock = StageClock()
    with clock:
        pool = encode_pool(vae, tokenizer, settings)
    record = {"fingerprint": key, "clips": len(pool), **clock.as_dict()}
    atomic_save(
        {
            "fingerprint": key,
            "latents": pool.latents,
            "ids": pool.ids,
            "empty_ids": pool.empty_ids,
            "captions": pool.captions,
            "record": record,
        },
        path,
    )
    log(f"encoded {len(pool)} clips into {path} ({clock.cpu:.0f} CPU s)")
    return pool, record
