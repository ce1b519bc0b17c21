"""The built-in ``tiny`` model: AnimateDiff's architecture at toy width, random weights.

It exists so that every code path (loading aside) runs in seconds on a CPU in tests and dry
runs. Its block layout mirrors SD1.5 (cross-attention down blocks, a plain lowest level, cross-
attention up blocks 1 and 2, motion modules everywhere) so module names such as
``up_blocks.1.motion_modules.0`` and ``up_blocks.2.attentions.1`` exist as in the real model.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import torch

from videodirector_cli.diffusion.components import DiffusionModel
from videodirector_cli.diffusion.schedule import make_ddim_scheduler

TINY_HIDDEN = 32
_CHANNELS = (32, 32, 64)

UNET2D_CONFIG: dict[str, Any] = dict(
    block_out_channels=_CHANNELS,
    layers_per_block=1,
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
    block_out_channels=_CHANNELS,
    motion_layers_per_block=1,
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
    """CLIPTextConfig fields of the tiny text encoder."""
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


def build_tiny_model(
    seed: int = 0, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> DiffusionModel:
    from diffusers import (
        AutoencoderKL,
        MotionAdapter,
        UNet2DConditionModel,
        UNetMotionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    unet2d = UNet2DConditionModel(**UNET2D_CONFIG)
    adapter = MotionAdapter(**ADAPTER_CONFIG)
    unet = UNetMotionModel.from_unet2d(unet2d, adapter)
    vae = AutoencoderKL(**VAE_CONFIG)
    tokenizer = build_tiny_tokenizer()
    text_encoder = CLIPTextModel(CLIPTextConfig(**text_encoder_fields(len(tokenizer))))
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
