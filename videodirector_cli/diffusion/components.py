"""The loaded model every diffusion stage works with, whatever it was loaded from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

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
    vae_frames: int = 4
    """Frames per VAE encode/decode call (latents.py); memory.use_plan lowers it."""

    @property
    def vae_scale_factor(self) -> int:
        config: Any = getattr(self.vae, "config")  # noqa: B009 (diffusers sets it at run time)
        return 2 ** (len(config.block_out_channels) - 1)

    @property
    def latent_channels(self) -> int:
        config: Any = getattr(self.vae, "config")  # noqa: B009
        return int(config.latent_channels)

    @property
    def max_tokens(self) -> int:
        return int(self.tokenizer.model_max_length)
