"""Tiny SD1.5-shaped components (diffusion/tiny.py's ``build_tiny_parts``) saved in every layout
vdir loads, plus the reverse key mappings (diffusers -> original LDM / AnimateDiff names) needed
to write single-file checkpoints."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

from videodirector_cli.diffusion.tiny import TINY_HIDDEN, TinyParts, build_tiny_parts

__all__ = ["TinyParts", "build_parts"]


def build_parts(seed: int = 1) -> TinyParts:
    """The tiny model's parts with AnimateDiff's original motion-module layout."""
    return build_tiny_parts(seed, original_motion_layout=True)


# ------------------------------------------------------------------------------------ layouts


def save_sd_folder(parts: TinyParts, root: Path, scheduler: Any | None = None) -> Path:
    """An SD1.5-style diffusers folder (UNet2DConditionModel, no motion modules)."""
    from diffusers import EulerDiscreteScheduler

    parts.unet2d.save_pretrained(root / "unet")
    parts.vae.save_pretrained(root / "vae")
    parts.text_encoder.save_pretrained(root / "text_encoder")
    parts.tokenizer.save_pretrained(root / "tokenizer")
    (scheduler or EulerDiscreteScheduler()).save_pretrained(root / "scheduler")
    (root / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    return root


def save_animatediff_folder(parts: TinyParts, root: Path) -> Path:
    from diffusers import AnimateDiffPipeline, DDIMScheduler

    pipe = AnimateDiffPipeline(
        vae=parts.vae,
        text_encoder=parts.text_encoder,
        tokenizer=parts.tokenizer,
        unet=parts.motion_unet(),
        motion_adapter=parts.adapter,
        scheduler=DDIMScheduler(),
    )
    pipe.save_pretrained(root)
    return root


def save_config_dir(parts: TinyParts, root: Path) -> Path:
    """What vdir ships as configs/sd15, but for the tiny shapes (single-file loading)."""
    parts.unet2d.save_config(root / "unet")
    parts.vae.save_config(root / "vae")
    parts.text_encoder.config.save_pretrained(root / "text_encoder")
    return root


# --------------------------------------------------------------------- single-file checkpoints


RESNET_TO_LDM = (
    ("norm1", "in_layers.0"),
    ("conv1", "in_layers.2"),
    ("time_emb_proj", "emb_layers.1"),
    ("norm2", "out_layers.0"),
    ("conv2", "out_layers.3"),
    ("conv_shortcut", "skip_connection"),
)


def _resnet(rest: str) -> str:
    for new, old in RESNET_TO_LDM:
        if rest.startswith(new + "."):
            return old + rest[len(new) :]
    raise KeyError(rest)


def unet_to_ldm(unet2d: Any) -> dict[str, torch.Tensor]:
    """diffusers UNet2DConditionModel -> original SD key names (model.diffusion_model.*)."""
    step = unet2d.config.layers_per_block + 1
    out = {}
    for key, value in unet2d.state_dict().items():
        if key.startswith("time_embedding.linear_"):
            index = 0 if key[len("time_embedding.linear_")] == "1" else 2
            new = f"time_embed.{index}.{key.rsplit('.', 1)[1]}"
        elif key.startswith("conv_in."):
            new = "input_blocks.0.0." + key[len("conv_in.") :]
        elif key.startswith("conv_norm_out."):
            new = "out.0." + key[len("conv_norm_out.") :]
        elif key.startswith("conv_out."):
            new = "out.2." + key[len("conv_out.") :]
        elif m := re.match(r"down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", key):
            i, j, rest = int(m[1]), int(m[2]), m[3]
            new = f"input_blocks.{1 + i * step + j}.0.{_resnet(rest)}"
        elif m := re.match(r"down_blocks\.(\d+)\.attentions\.(\d+)\.(.*)", key):
            i, j, rest = int(m[1]), int(m[2]), m[3]
            new = f"input_blocks.{1 + i * step + j}.1.{rest}"
        elif m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key):
            new = f"input_blocks.{(int(m[1]) + 1) * step}.0.op.{m[2]}"
        elif m := re.match(r"mid_block\.resnets\.(\d+)\.(.*)", key):
            new = f"middle_block.{0 if m[1] == '0' else 2}.{_resnet(m[2])}"
        elif m := re.match(r"mid_block\.attentions\.0\.(.*)", key):
            new = f"middle_block.1.{m[1]}"
        elif m := re.match(r"up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", key):
            i, j, rest = int(m[1]), int(m[2]), m[3]
            new = f"output_blocks.{i * step + j}.0.{_resnet(rest)}"
        elif m := re.match(r"up_blocks\.(\d+)\.attentions\.(\d+)\.(.*)", key):
            i, j, rest = int(m[1]), int(m[2]), m[3]
            new = f"output_blocks.{i * step + j}.1.{rest}"
        elif m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key):
            i = int(m[1])
            has_attention = hasattr(unet2d.up_blocks[i], "attentions")
            new = f"output_blocks.{i * step + step - 1}.{2 if has_attention else 1}.conv.{m[2]}"
        else:
            raise KeyError(key)
        out["model.diffusion_model." + new] = value.clone()
    return out


VAE_RESNET = (("conv_shortcut", "nin_shortcut"),)
VAE_ATTENTION = (
    ("group_norm", "norm"),
    ("to_q", "q"),
    ("to_k", "k"),
    ("to_v", "v"),
    ("to_out.0", "proj_out"),
)


def vae_to_ldm(vae: Any) -> dict[str, torch.Tensor]:
    """diffusers AutoencoderKL -> original key names (first_stage_model.*)."""
    levels = len(vae.config.block_out_channels)
    out = {}
    for key, value in vae.state_dict().items():
        new = key
        for side in ("encoder", "decoder"):
            new = new.replace(f"{side}.conv_norm_out", f"{side}.norm_out")
            new = new.replace(f"{side}.mid_block.resnets.0", f"{side}.mid.block_1")
            new = new.replace(f"{side}.mid_block.resnets.1", f"{side}.mid.block_2")
        if m := re.match(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", new):
            new = f"encoder.down.{m[1]}.block.{m[2]}.{m[3]}"
        elif m := re.match(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.(.*)", new):
            new = f"encoder.down.{m[1]}.downsample.{m[2]}"
        elif m := re.match(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", new):
            new = f"decoder.up.{levels - 1 - int(m[1])}.block.{m[2]}.{m[3]}"
        elif m := re.match(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.(.*)", new):
            new = f"decoder.up.{levels - 1 - int(m[1])}.upsample.{m[2]}"
        if m := re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.*)", new):
            rest = m[2]
            for a, b in VAE_ATTENTION:
                if rest.startswith(a + "."):
                    rest = b + rest[len(a) :]
            new = f"{m[1]}.mid.attn_1.{rest}"
            if value.ndim == 2:
                value = value[:, :, None, None]
        for a, b in VAE_RESNET:
            new = new.replace(a, b)
        out["first_stage_model." + new] = value.clone()
    return out


def text_encoder_to_ldm(text_encoder: Any) -> dict[str, torch.Tensor]:
    return {
        "cond_stage_model.transformer." + k: v.clone()
        for k, v in text_encoder.state_dict().items()
        if not k.endswith("position_ids")
    }


def adapter_to_original(adapter: Any) -> dict[str, torch.Tensor]:
    """diffusers MotionAdapter -> AnimateDiff's original motion-module names (mm_*.ckpt)."""
    out = {}
    for key, value in adapter.state_dict().items():
        m = re.match(r"(.*\.motion_modules\.\d+)\.(.*)", key)
        head, rest = m[1], m[2]
        if rest.endswith("pos_embed.pe"):
            block = rest.split(".pos_embed")[0]
            for index in (0, 1):
                out[
                    f"{head}.temporal_transformer.{block}.attention_blocks.{index}.pos_encoder.pe"
                ] = value.clone()
            continue
        rest = (
            rest.replace(".attn1.", ".attention_blocks.0.")
            .replace(".attn2.", ".attention_blocks.1.")
            .replace(".norm1.", ".norms.0.")
            .replace(".norm2.", ".norms.1.")
            .replace(".norm3.", ".ff_norm.")
        )
        out[f"{head}.temporal_transformer.{rest}"] = value.clone()
    return out


# ------------------------------------------------------------------------------------ checks


def noise_prediction(unet: Any, seed: int = 0, frames: int = 3) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    sample = torch.randn(1, 4, frames, 8, 8, generator=generator)
    text = torch.randn(frames, 77, TINY_HIDDEN, generator=generator)  # one row per frame
    with torch.no_grad():
        return unet(sample, torch.tensor([500]), encoder_hidden_states=text).sample
