"""The built-in ``tiny`` model: AnimateDiff's architecture at toy width, random weights.

It exists so that every code path (loading aside) runs in seconds on a CPU in tests and dry
runs. Its block layout mirrors SD1.5 (cross-attention down blocks, a plain lowest level, cross-
attention up blocks 1 and 2, motion modules everywhere) so module names such as
``up_blocks.1.motion_modules.0`` and ``up_blocks.2.attentions.1`` exist as in the real model.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from videodirector_cli.diffusion.components import DiffusionModel
from videodirector_cli.diffusion.schedule import make_ddim_scheduler

TINY_HIDDEN = 32


def _byte_level_vocab() -> dict[str, int]:
    """CLIP's byte-to-unicode characters, with and without the end-of-word mark."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            chars.append(256 + extra)
            extra += 1
    symbols = [chr(c) for c in chars]
    vocab: dict[str, int] = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for symbol in symbols:
        vocab[symbol] = len(vocab)
    for symbol in symbols:
        vocab[symbol + "</w>"] = len(vocab)
    return vocab


def build_tiny_tokenizer():
    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "vocab.json").write_text(json.dumps(_byte_level_vocab()))
        Path(folder, "merges.txt").write_text("#version: 0.2\n")
        return CLIPTokenizer.from_pretrained(folder, model_max_length=77, pad_token="<|endoftext|>")


TINY_CHANNELS = (32, 32, 64)
TINY_LAYERS = 1

UNET2D_CONFIG: dict[str, Any] = dict(
    block_out_channels=TINY_CHANNELS,
    layers_per_block=TINY_LAYERS,
    sample_size=16,
    in_channels=4,
    out_channels=4,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=TINY_HIDDEN,
    attention_head_dim=8,
    norm_num_groups=4,
)
ADAPTER_CONFIG: dict[str, Any] = dict(
    block_out_channels=TINY_CHANNELS,
    motion_layers_per_block=TINY_LAYERS,
    motion_norm_num_groups=4,
    motion_num_attention_heads=2,
    motion_max_seq_length=32,
)
VAE_CONFIG: dict[str, Any] = dict(
    block_out_channels=[16, 32],
    in_channels=3,
    out_channels=3,
    down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
    up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
    latent_channels=4,
    norm_num_groups=4,
    sample_size=32,
)
TOKENIZER_SIZE = 2 + 2 * 256
"""The byte-level vocabulary: two specials, 256 byte characters with and without '</w>'."""


def text_encoder_fields(vocab_size: int = TOKENIZER_SIZE) -> dict[str, Any]:
    """CLIPTextConfig fields of the tiny text encoder (the meta-device estimate reads them too)."""
    return dict(
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
        hidden_size=TINY_HIDDEN,
        intermediate_size=37,
        layer_norm_eps=1e-05,
        num_attention_heads=4,
        num_hidden_layers=2,
        vocab_size=vocab_size,
        max_position_embeddings=77,
    )


@dataclass
class TinyParts:
    """The tiny model's components before the motion modules join the UNet: what the loader
    tests save in every layout vdir loads (diffusers folders, single-file checkpoints)."""

    unet2d: Any
    adapter: Any
    vae: Any
    text_encoder: Any
    tokenizer: Any

    def motion_unet(self) -> Any:
        from diffusers import UNetMotionModel

        return UNetMotionModel.from_unet2d(self.unet2d, self.adapter).eval()


def _unet2d() -> Any:
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(**UNET2D_CONFIG)


def _adapter(original_layout: bool) -> Any:
    from diffusers import MotionAdapter

    config = dict(ADAPTER_CONFIG)
    if original_layout:
        # AnimateDiff's original motion files: 32 groups and 8 heads (their shapes do not say)
        config.update(motion_norm_num_groups=32, motion_num_attention_heads=8)
    return MotionAdapter(**config)


def _vae() -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(**VAE_CONFIG)


def _text_encoder(tokenizer: Any) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(CLIPTextConfig(**text_encoder_fields(len(tokenizer))))


def build_tiny_parts(seed: int = 1, original_motion_layout: bool = True) -> TinyParts:
    """The one variant of the tiny model: its parts, unjoined, in eval mode. With
    ``original_motion_layout`` the motion modules have the norm groups and heads of AnimateDiff's
    original files, so they survive a round trip through that format."""
    torch.manual_seed(seed)
    unet2d, adapter, vae = _unet2d(), _adapter(original_motion_layout), _vae()
    tokenizer = build_tiny_tokenizer()
    text_encoder = _text_encoder(tokenizer)
    for module in (unet2d, adapter, vae, text_encoder):
        module.eval()
    return TinyParts(unet2d, adapter, vae, text_encoder, tokenizer)


def build_tiny_model(
    seed: int = 0, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> DiffusionModel:
    """The built-in ``tiny`` model (``--model tiny``): random weights from ``seed``."""
    from diffusers import UNetMotionModel

    torch.manual_seed(seed)  # the parts are drawn in this order: changing it changes the weights
    unet = UNetMotionModel.from_unet2d(_unet2d(), _adapter(original_layout=False))
    vae = _vae()
    tokenizer = build_tiny_tokenizer()
    text_encoder = _text_encoder(tokenizer)
    scheduler = make_ddim_scheduler()
    device = torch.device(device)
    modules: tuple[Any, ...] = (unet, vae, text_encoder)
    for module in modules:
        module.eval().requires_grad_(False)
        if device.type != "cpu" or dtype != torch.float32:
            module.to(device=device, dtype=dtype)
    return DiffusionModel(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=scheduler,
        device=device,
        dtype=dtype,
        identity={"model": f"builtin:tiny:seed={seed}"},
        meaningless=True,
    )
