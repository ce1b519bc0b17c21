"""The loaded model every diffusion stage works with, whatever it was loaded from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, UNetMotionModel
    from transformers import CLIPTextModel, CLIPTokenizer


@dataclass
class DiffusionModel:
    unet: UNetMotionModel
    vae: AutoencoderKL
    text_encoder: CLIPTextModel
    tokenizer: CLIPTokenizer
    scheduler: DDIMScheduler
    device: torch.device
    dtype: torch.dtype
    identity: dict[str, str] = field(default_factory=dict)
    """What identifies the weights (names, file hashes); part of every inversion key."""
    meaningless: bool = False
    """True for random weights: the pipeline runs, but images mean nothing."""

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.latent_channels)

    @property
    def max_tokens(self) -> int:
        return int(self.tokenizer.model_max_length)
