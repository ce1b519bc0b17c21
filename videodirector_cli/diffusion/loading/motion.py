"""AnimateDiff motion modules: a diffusers MotionAdapter folder or an original motion-module
file (``v3_sd15_mm.ckpt`` and its v1/v2 siblings), fitted onto the base UNet."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from videodirector_cli.diffusion.loading.common import Parts, loading, read_config
from videodirector_cli.diffusion.loading.folders import DIFFUSERS_WEIGHTS, require_component
from videodirector_cli.diffusion.loading.identity import identity_of
from videodirector_cli.diffusion.loading.locate import (
    ADAPTER_PATTERNS,
    DEFAULT_MOTION_ADAPTER,
    Reference,
    locate,
)
from videodirector_cli.diffusion.loading.single_file import (
    checkpoint_kind,
    read_checkpoint,
    refuse_kind,
)
from videodirector_cli.errors import ModelError
from videodirector_cli.output import Output

MOTION_V3_CONFIG = (
    Path(__file__).resolve().parents[1] / "configs" / "animatediff-v3" / "config.json"
)


def attach_motion(parts: Parts, ref: Reference | None, out: Output) -> None:
    """Give the UNet its motion modules: from ``ref`` (or the default), unless it has them."""
    from diffusers import UNetMotionModel

    has_motion = isinstance(parts.unet, UNetMotionModel)
    if has_motion and ref is None:
        parts.identity["motion_adapter"] = "included"
        return
    adapter_ref = ref or Reference(DEFAULT_MOTION_ADAPTER, DEFAULT_MOTION_ADAPTER)
    adapter, parts.identity["motion_adapter"] = _load_adapter(adapter_ref)
    _check_adapter_fits(parts.unet, adapter, adapter_ref.text)
    with loading("the motion adapter into the UNet", Path(adapter_ref.text)):
        if has_motion:
            out.info(f"replacing the model's motion modules with {adapter_ref.text}")
            parts.unet.load_motion_modules(adapter)
        else:
            parts.unet = UNetMotionModel.from_unet2d(parts.unet, adapter)


def _check_adapter_fits(unet: Any, adapter: Any, ref: str) -> None:
    unet_channels = tuple(unet.config.block_out_channels)
    adapter_channels = tuple(adapter.config.block_out_channels)
    if unet_channels != adapter_channels:
        raise ModelError(
            f"motion adapter {ref} (channels {list(adapter_channels)}) does not fit this UNet "
            f"(channels {list(unet_channels)})",
            hint="AnimateDiff SD1.5 adapters need an SD1.5-family base model",
        )


def _load_adapter(ref: Reference) -> tuple[Any, str]:
    from diffusers import MotionAdapter

    located = locate(ref, "motion adapter", ADAPTER_PATTERNS)
    path = located.path
    if path.is_file():
        return _adapter_from_file(path), identity_of(located, path)
    config_path = path / "config.json"
    if not config_path.is_file() and (path / "motion_adapter" / "config.json").is_file():
        path = path / "motion_adapter"
        config_path = path / "config.json"
    kind = read_config(config_path).get("_class_name") if config_path.is_file() else None
    if kind != "MotionAdapter":
        raise ModelError(
            f"{ref.text} is not a motion adapter folder (config.json with _class_name MotionAdapter)",
            hint="pass a folder saved by MotionAdapter.save_pretrained, a hub id, or an original "
            "motion-module file such as v3_sd15_mm.ckpt",
        )
    variant = require_component(path.parent, path.name, DIFFUSERS_WEIGHTS, "the motion adapter")
    with loading("the motion adapter", path):
        adapter = MotionAdapter.from_pretrained(path, variant=variant)
    return adapter, identity_of(located, path)


def motion_config_from_state(state: dict[str, Any]) -> dict[str, Any]:
    """A MotionAdapter config read off an original motion-module file's tensor shapes.

    Starts from AnimateDiff v3's shipped config (heads and norm groups cannot be read off shapes)
    and takes channels, layers per block, mid block and positions from the file, so v1, v2 and
    v3 files all load.
    """
    config = read_config(MOTION_V3_CONFIG)
    channels: list[int] = []
    layers: dict[int, set[int]] = {}
    for key, value in state.items():
        match = re.match(r"down_blocks\.(\d+)\.motion_modules\.(\d+)\.", key)
        if match:
            block, layer = int(match.group(1)), int(match.group(2))
            layers.setdefault(block, set()).add(layer)
            if key.endswith("proj_in.weight"):
                while len(channels) <= block:
                    channels.append(0)
                channels[block] = int(value.shape[0])
    if not channels or 0 in channels:
        raise ModelError("the motion-module file has no down_blocks.N.motion_modules weights")
    config["block_out_channels"] = channels
    config["motion_layers_per_block"] = max(len(v) for v in layers.values())
    config["use_motion_mid_block"] = any(k.startswith("mid_block.motion_modules") for k in state)
    positions = [v for k, v in state.items() if k.endswith("pos_encoder.pe")]
    if positions:
        config["motion_max_seq_length"] = int(positions[0].shape[1])
    groups = int(config.get("motion_norm_num_groups", 32))
    if any(c % groups for c in channels):
        config["motion_norm_num_groups"] = _largest_divisor(channels, groups)
    return config


def _largest_divisor(channels: list[int], start: int) -> int:
    for groups in range(start, 0, -1):
        if all(c % groups == 0 for c in channels):
            return groups
    return 1


def convert_motion_state(state: dict[str, Any]) -> dict[str, Any]:
    """Original AnimateDiff motion-module key names -> diffusers MotionAdapter names."""
    renames = (
        (".temporal_transformer", ""),
        (".attention_blocks.0", ".attn1"),
        (".attention_blocks.1", ".attn2"),
        (".norms.0", ".norm1"),
        (".norms.1", ".norm2"),
        (".ff_norm", ".norm3"),
    )
    converted = {}
    for key, value in state.items():
        if "pos_encoder" in key:  # fixed sinusoids; diffusers recomputes the same table
            continue
        new = key
        for old, replacement in renames:
            new = new.replace(old, replacement)
        converted[new] = value
    return converted


def _adapter_from_file(path: Path) -> Any:
    from diffusers import MotionAdapter

    state = read_checkpoint(path)
    kind = checkpoint_kind(state)
    if kind != "motion":
        refuse_kind(kind, path, "a motion module")
    config = motion_config_from_state(state)
    config.pop("_class_name", None)
    with loading("the motion module", path):
        adapter: Any = MotionAdapter(**config)
        result = adapter.load_state_dict(convert_motion_state(state), strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("pos_embed.pe")]
    if missing or result.unexpected_keys:
        shown = (missing or list(result.unexpected_keys))[:2]
        raise ModelError(
            f"{path.name} does not match an AnimateDiff motion adapter ({len(missing)} missing, "
            f"{len(result.unexpected_keys)} unexpected tensors, e.g. {', '.join(shown)})"
        )
    return adapter.eval()
