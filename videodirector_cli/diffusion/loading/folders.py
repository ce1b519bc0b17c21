"""Diffusers pipeline folders (AnimateDiff or SD1.5) and tokenizer folders.

Folder layouts are checked here before any library call, so that what is missing is named
(diffusers' own errors for an incomplete folder read like network problems).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from videodirector_cli.diffusion.loading.common import Parts, loading, read_config
from videodirector_cli.errors import ModelError

DIFFUSERS_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
TRANSFORMERS_WEIGHTS = ("model.safetensors", "pytorch_model.bin")


def component_weights(folder: Path, names: tuple[str, ...]) -> tuple[list[Path], str | None]:
    """The weight files of a diffusers/transformers component folder, and the variant to ask for."""
    for name in names:
        if (folder / name).is_file():
            return [folder / name], None
        index = folder / f"{name}.index.json"
        if index.is_file():
            shards = sorted(set(read_config(index).get("weight_map", {}).values()))
            return [index, *(folder / s for s in shards)], None
    for variant in ("fp16", "bf16"):
        for name in names:
            stem, suffix = name.rsplit(".", 1)
            candidate = folder / f"{stem}.{variant}.{suffix}"
            if candidate.is_file():
                return [candidate], variant
    return [], None


def require_component(root: Path, sub: str, weights: tuple[str, ...], what: str) -> str | None:
    """Check ``root/sub`` holds a config and complete weights; return the variant to load."""
    folder = root / sub
    if not folder.is_dir():
        raise ModelError(
            f"{root} has no {sub}/ folder ({what}): not a complete diffusers SD/AnimateDiff model"
        )
    config = "config.json"
    if not (folder / config).is_file():
        raise ModelError(f"{folder} has no {config}: the download looks incomplete")
    files, variant = component_weights(folder, weights)
    if not files:
        raise ModelError(
            f"{folder} has no weights ({' or '.join(weights)}): the download looks incomplete",
            hint="fetch the missing files again (hf download ...)",
        )
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise ModelError(f"{folder} is missing weight shards: {', '.join(missing[:3])}")
    return variant


def inspect_folder(root: Path, label: str) -> str:
    """'motion' (AnimateDiff pipeline) or '2d' (SD pipeline); ModelError for anything else."""
    unet_config = root / "unet" / "config.json"
    if not unet_config.is_file():
        root_config = root / "config.json"
        kind = read_config(root_config).get("_class_name") if root_config.is_file() else None
        if kind == "MotionAdapter":
            raise ModelError(
                f"{label} is a motion adapter, not a base model",
                hint="pass it as --motion-adapter",
            )
        if kind and kind.startswith("Autoencoder"):
            raise ModelError(f"{label} is a VAE, not a base model", hint="pass it as --vae")
        raise ModelError(
            f"{label} has no unet/ folder: not a diffusers SD/AnimateDiff model",
            hint="point --model at a folder with model_index.json, unet/, vae/, text_encoder/ "
            "and tokenizer/, or at a single .safetensors/.ckpt file",
        )
    config = read_config(unet_config)
    kind = config.get("_class_name", "")
    if config.get("addition_embed_type") == "text_time" or "SDXL" in str(config):
        raise ModelError(
            f"{label} is an SDXL model; AnimateDiff v3 needs an SD1.5-family model",
            hint="use an SD1.5 fine-tune such as the default Realistic Vision",
        )
    if kind == "UNetMotionModel":
        return "motion"
    if kind == "UNet2DConditionModel":
        return "2d"
    raise ModelError(f"{label}'s unet is a {kind or 'unknown model'}, not an SD1.5 UNet")


def load_folder(root: Path, label: str) -> Parts:
    """A diffusers pipeline folder: AnimateDiff (UNetMotionModel) or SD1.5 (UNet2DConditionModel)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel, UNetMotionModel
    from transformers import CLIPTextModel

    kind = inspect_folder(root, label)
    unet_variant = require_component(root, "unet", DIFFUSERS_WEIGHTS, "the denoising UNet")
    te_variant = require_component(root, "text_encoder", TRANSFORMERS_WEIGHTS, "the text encoder")
    tokenizer = load_tokenizer_folder(root / "tokenizer", label)
    has_vae = (root / "vae").is_dir()
    vae_variant = require_component(root, "vae", DIFFUSERS_WEIGHTS, "the VAE") if has_vae else None
    _check_scheduler_config(root)
    unet_class = UNetMotionModel if kind == "motion" else UNet2DConditionModel
    with loading("the UNet", root / "unet"):
        unet = unet_class.from_pretrained(root / "unet", variant=unet_variant)
    with loading("the text encoder", root / "text_encoder"):
        text_encoder = CLIPTextModel.from_pretrained(root / "text_encoder", variant=te_variant)
    vae = None
    if has_vae:
        with loading("the VAE", root / "vae"):
            vae = AutoencoderKL.from_pretrained(root / "vae", variant=vae_variant)
    parts = Parts(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler_note=_scheduler_note(root),
    )
    check_text_width(parts, label)
    return parts


def load_tokenizer_folder(folder: Path, label: str) -> Any:
    from transformers import CLIPTokenizer

    if not folder.is_dir():
        raise ModelError(
            f"{label} has no tokenizer/ folder: not a complete diffusers SD/AnimateDiff model"
        )
    if not has_tokenizer_files(folder):
        raise ModelError(
            f"{folder} lacks tokenizer.json or vocab.json + merges.txt: the download looks "
            "incomplete",
            hint="fetch the tokenizer/ files again (hf download ...)",
        )
    with loading("the tokenizer", folder):
        tokenizer = CLIPTokenizer.from_pretrained(folder)
    if tokenizer.model_max_length > 100_000:  # a tokenizer_config without a length
        tokenizer.model_max_length = 77
    return tokenizer


def has_tokenizer_files(folder: Path) -> bool:
    if (folder / "tokenizer.json").is_file():
        return True
    return (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file()


def _check_scheduler_config(root: Path) -> None:
    path = root / "scheduler" / "scheduler_config.json"
    if path.is_file() and read_config(path).get("prediction_type") == "v_prediction":
        raise ModelError(
            f"{root} is a v-prediction model (SD2-style); AnimateDiff v3 needs an SD1.5-family "
            "epsilon model"
        )


def _scheduler_note(root: Path) -> str:
    path = root / "scheduler" / "scheduler_config.json"
    if not path.is_file():
        return ""
    return str(read_config(path).get("_class_name", ""))


def check_text_width(parts: Parts, label: str) -> None:
    width = int(parts.text_encoder.config.hidden_size)
    cross = parts.unet.config.cross_attention_dim
    if cross is not None and int(cross if isinstance(cross, int) else cross[0]) != width:
        raise ModelError(
            f"{label}: the UNet expects text features of width {cross} but the text encoder "
            f"gives {width}; not an SD1.5-family model"
        )
