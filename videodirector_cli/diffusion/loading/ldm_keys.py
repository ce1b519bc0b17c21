"""Which tensors a single SD1.5 file must hold, by their names in the file (the LDM layout).

diffusers' ``from_single_file`` neither reports the UNet/VAE tensors a damaged file lacks (they
stay on the meta device and fail later as "Cannot copy out of meta tensor") nor the ones it
ignores. vdir names them: every tensor the diffusers model has is given its LDM name, and the
file is compared against that list before diffusers converts it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from videodirector_cli.diffusion.loading.common import sample
from videodirector_cli.errors import ModelError
from videodirector_cli.output import Output

_UNET_RESNET = (
    ("norm1.", "in_layers.0."),
    ("conv1.", "in_layers.2."),
    ("time_emb_proj.", "emb_layers.1."),
    ("norm2.", "out_layers.0."),
    ("conv2.", "out_layers.3."),
    ("conv_shortcut.", "skip_connection."),
)
_VAE_ATTENTION = (
    ("group_norm.", "norm."),
    ("to_q.", "q."),
    ("to_k.", "k."),
    ("to_v.", "v."),
    ("to_out.0.", "proj_out."),
)


def _renamed(rest: str, table: tuple[tuple[str, str], ...]) -> str:
    for new, old in table:
        if rest.startswith(new):
            return old + rest[len(new) :]
    return rest


def unet_ldm_name(key: str, config: dict[str, Any]) -> str:
    """The LDM name (without ``model.diffusion_model.``) of a UNet2DConditionModel tensor."""
    step = int(config["layers_per_block"]) + 1  # LDM counts a block's layers and its resampler
    up_attention = ["CrossAttn" in kind for kind in config["up_block_types"]]
    fixed = {
        "time_embedding.linear_1.": "time_embed.0.",
        "time_embedding.linear_2.": "time_embed.2.",
        "conv_in.": "input_blocks.0.0.",
        "conv_norm_out.": "out.0.",
        "conv_out.": "out.2.",
    }
    for new, old in fixed.items():
        if key.startswith(new):
            return old + key[len(new) :]
    if m := re.fullmatch(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
        index = 1 + int(m[1]) * step + int(m[3])
        if m[2] == "resnets":
            return f"input_blocks.{index}.0.{_renamed(m[4], _UNET_RESNET)}"
        return f"input_blocks.{index}.1.{m[4]}"
    if m := re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
        return f"input_blocks.{(int(m[1]) + 1) * step}.0.op.{m[2]}"
    if m := re.fullmatch(r"mid_block\.resnets\.(\d)\.(.+)", key):
        return f"middle_block.{2 * int(m[1])}.{_renamed(m[2], _UNET_RESNET)}"
    if m := re.fullmatch(r"mid_block\.attentions\.0\.(.+)", key):
        return f"middle_block.1.{m[1]}"
    if m := re.fullmatch(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
        index = int(m[1]) * step + int(m[3])
        if m[2] == "resnets":
            return f"output_blocks.{index}.0.{_renamed(m[4], _UNET_RESNET)}"
        return f"output_blocks.{index}.1.{m[4]}"
    if m := re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
        block = int(m[1])
        return (
            f"output_blocks.{block * step + step - 1}.{2 if up_attention[block] else 1}.conv.{m[2]}"
        )
    raise KeyError(f"no LDM name for the UNet tensor {key}")


def vae_ldm_name(key: str, config: dict[str, Any]) -> str:
    """The LDM name (without ``first_stage_model.``) of an AutoencoderKL tensor."""
    levels = len(config["block_out_channels"])
    if m := re.fullmatch(r"(encoder|decoder)\.conv_norm_out\.(.+)", key):
        return f"{m[1]}.norm_out.{m[2]}"
    if m := re.fullmatch(r"(encoder|decoder)\.mid_block\.resnets\.(\d)\.(.+)", key):
        return f"{m[1]}.mid.block_{int(m[2]) + 1}.{_vae_resnet(m[3])}"
    if m := re.fullmatch(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.+)", key):
        return f"{m[1]}.mid.attn_1.{_renamed(m[2], _VAE_ATTENTION)}"
    if m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        return f"encoder.down.{m[1]}.block.{m[2]}.{_vae_resnet(m[3])}"
    if m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.(.+)", key):
        return f"encoder.down.{m[1]}.downsample.{m[2]}"
    if m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):  # reversed
        return f"decoder.up.{levels - 1 - int(m[1])}.block.{m[2]}.{_vae_resnet(m[3])}"
    if m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.(.+)", key):
        return f"decoder.up.{levels - 1 - int(m[1])}.upsample.{m[2]}"
    if re.fullmatch(r"(encoder|decoder)\.conv_(in|out)\..+|(post_)?quant_conv\..+", key):
        return key
    raise KeyError(f"no LDM name for the VAE tensor {key}")


def _vae_resnet(rest: str) -> str:
    return _renamed(rest, (("conv_shortcut.", "nin_shortcut."),))


def expected_names(component: str, config: dict[str, Any]) -> set[str]:
    """The LDM names of every tensor the diffusers ``component`` ('unet' or 'vae') loads.

    The model is built on the meta device from its config (no memory, no weights) only to list
    its state-dict keys.
    """
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel

    model_class: Any = UNet2DConditionModel if component == "unet" else AutoencoderKL
    name = unet_ldm_name if component == "unet" else vae_ldm_name
    with torch.device("meta"):
        model = model_class.from_config(config)
    return {name(key, config) for key in model.state_dict()}


def check_single_file_keys(
    state: dict[str, Any],
    prefix: str,
    expected: set[str],
    what: str,
    path: Path,
    out: Output,
) -> None:
    """ModelError naming the tensors ``what`` needs that the file lacks; a warning naming the
    tensors under ``prefix`` that it would ignore."""
    present = {key[len(prefix) :] for key in state if key.startswith(prefix)}
    missing = sorted(prefix + key for key in expected - present)
    unused = sorted(prefix + key for key in present - expected)
    if missing:
        raise ModelError(
            f"{path.name} lacks {len(missing)} of the {len(expected)} {what} tensors "
            f"({sample(missing)}): the file is damaged or not an SD1.5 checkpoint",
            hint="download the file again, or use another checkpoint",
        )
    if unused:
        count = f"{len(unused)} tensor{'s' if len(unused) > 1 else ''}"
        out.warn(f"{path.name} holds {count} the {what} does not use, ignored ({sample(unused)})")
