"""Single-file SD1.5 checkpoints (the civitai layout): read, classify, convert.

The UNet, VAE and text encoder come out of one LDM-layout state dict, using SD1.5 configs shipped
with vdir so nothing is fetched; the tokenizer, which such files lack, comes from a local copy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from videodirector_cli.diffusion.devices import is_out_of_memory
from videodirector_cli.diffusion.loading.common import Parts, first_line, loading, read_config
from videodirector_cli.diffusion.loading.folders import (
    check_text_width,
    has_tokenizer_files,
    load_tokenizer_folder,
)
from videodirector_cli.diffusion.loading.ldm_keys import check_single_file_keys, expected_names
from videodirector_cli.diffusion.loading.locate import (
    CLIP_TOKENIZER_REPO,
    DEFAULT_MODEL,
    HUB_ID,
    TOKENIZER_FILES,
    cached_snapshot,
    download_command,
    hub_offline,
)
from videodirector_cli.errors import ModelError, VdirError
from videodirector_cli.output import Output

SD15_CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "sd15"
"""diffusers configs of SD1.5's UNet, VAE and text encoder, for single-file checkpoints offline."""

TOKENIZER_SOURCES: tuple[tuple[str, str], ...] = (
    (DEFAULT_MODEL, "tokenizer"),
    ("stable-diffusion-v1-5/stable-diffusion-v1-5", "tokenizer"),
    ("runwayml/stable-diffusion-v1-5", "tokenizer"),
    (CLIP_TOKENIZER_REPO, ""),
)
"""(hub id or folder, subfolder) searched, locally only, for a single file's tokenizer."""

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIXES = ("cond_stage_model.transformer.text_model.", "cond_stage_model.transformer.")


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The tensors of a .safetensors or .ckpt/.pt file (no pickled objects: weights only)."""
    import torch

    state: Any
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        if is_out_of_memory(exc) or isinstance(exc, MemoryError):
            raise
        raise ModelError(
            f"{path} is not a readable weights file ({first_line(exc)})",
            hint="check that the download finished; .ckpt files holding Python objects are "
            "refused for safety: convert them to .safetensors",
        ) from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state:
        raise ModelError(f"{path} holds no tensors")
    return state


def checkpoint_kind(state: dict[str, Any]) -> str:
    """'sd', 'motion', 'vae', 'sdxl' or 'unknown', from the key names."""
    keys = list(state)
    if any(k.startswith("conditioner.embedders") for k in keys):
        return "sdxl"
    if any(k.startswith(UNET_PREFIX) for k in keys):
        return "sd"
    if any("motion_modules" in k for k in keys):
        return "motion"
    if any(k.startswith(("encoder.conv_in", VAE_PREFIX + "encoder.conv_in")) for k in keys):
        return "vae"
    return "unknown"


def refuse_kind(kind: str, path: Path, wanted: str) -> None:
    advice = {
        "motion": ("an AnimateDiff motion module", "pass it as --motion-adapter"),
        "vae": ("a VAE", "pass it as --vae"),
        "sdxl": ("an SDXL checkpoint", "AnimateDiff v3 needs an SD1.5-family model"),
        "sd": ("a full SD checkpoint", "pass it as --model"),
        "unknown": ("not a Stable Diffusion / AnimateDiff checkpoint", "check the file"),
    }[kind]
    raise ModelError(f"{path.name} is {advice[0]}, not {wanted}", hint=advice[1])


def load_single_file_base(path: Path, out: Output) -> Parts:
    from diffusers import UNet2DConditionModel

    state = read_checkpoint(path)
    kind = checkpoint_kind(state)
    if kind != "sd":
        refuse_kind(kind, path, "a base model")
    _check_sd15_checkpoint(state, path)
    out.info(f"loading single-file checkpoint {path.name} (SD1.5 configs shipped with vdir)")
    _check_keys(state, "unet", UNET_PREFIX, path, out)
    with loading("the UNet", path):
        unet = UNet2DConditionModel.from_single_file(
            state, config=str(SD15_CONFIG_DIR), subfolder="unet", local_files_only=True
        )
    has_vae = any(k.startswith(VAE_PREFIX) for k in state)
    vae = vae_from_state(state, path, out) if has_vae else None
    text_encoder = _text_encoder_from_state(state, path)
    tokenizer = _find_tokenizer(out)
    parts = Parts(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer)
    check_text_width(parts, path.name)
    return parts


def vae_from_state(state: dict[str, Any], path: Path, out: Output) -> Any:
    """SD1.5's VAE from a full checkpoint (first_stage_model.*) or a VAE-only file."""
    from diffusers import AutoencoderKL

    prefixed = any(key.startswith(VAE_PREFIX) for key in state)
    _check_keys(state, "vae", VAE_PREFIX if prefixed else "", path, out)
    with loading("the VAE", path):
        return AutoencoderKL.from_single_file(
            state, config=str(SD15_CONFIG_DIR), subfolder="vae", local_files_only=True
        )


def _check_keys(
    state: dict[str, Any], component: str, prefix: str, path: Path, out: Output
) -> None:
    """Name what the file lacks (an error) or holds unused (a warning) before diffusers converts."""
    config = read_config(SD15_CONFIG_DIR / component / "config.json")
    what = {"unet": "UNet", "vae": "VAE"}[component]
    check_single_file_keys(state, prefix, expected_names(component, config), what, path, out)


def _check_sd15_checkpoint(state: dict[str, Any], path: Path) -> None:
    conv_in = state.get(UNET_PREFIX + "input_blocks.0.0.weight")
    if conv_in is not None and conv_in.shape[1] != 4:
        raise ModelError(
            f"{path.name} is an inpainting or other {conv_in.shape[1]}-channel UNet; "
            "AnimateDiff needs a plain text-to-image SD1.5 checkpoint"
        )
    if not any(k.startswith(CLIP_PREFIXES[1]) for k in state):
        raise ModelError(
            f"{path.name} has no CLIP text encoder (cond_stage_model.transformer.*): "
            "not an SD1.5 checkpoint (SD2 uses OpenCLIP)",
            hint="use an SD1.5-family checkpoint",
        )


def _text_encoder_from_state(state: dict[str, Any], path: Path) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel

    bare: dict[str, Any] = {}  # names inside the text transformer: embeddings.*, encoder.*, ...
    for key, value in state.items():
        for prefix in CLIP_PREFIXES:
            if key.startswith(prefix):
                bare[key[len(prefix) :]] = value
                break
    config = CLIPTextConfig.from_pretrained(SD15_CONFIG_DIR / "text_encoder")
    embed = bare.get("embeddings.token_embedding.weight")
    if embed is not None:
        config.vocab_size, config.hidden_size = int(embed.shape[0]), int(embed.shape[1])
    with loading("the text encoder", path):
        model = CLIPTextModel(config)
        # transformers 4 nests the transformer under "text_model."; 5 does not.
        nested = any(k.startswith("text_model.") for k in model.state_dict())
        converted = {("text_model." + k if nested else k): v for k, v in bare.items()}
        result = model.load_state_dict(converted, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("position_ids")]
    unexpected = [k for k in result.unexpected_keys if not k.endswith("position_ids")]
    if missing or unexpected:
        shown = (missing or unexpected)[:2]
        raise ModelError(
            f"{path.name}: its text encoder does not match SD1.5's CLIP ViT-L/14 ({len(missing)} "
            f"missing, {len(unexpected)} unexpected tensors, e.g. {', '.join(shown)})"
        )
    return model


def _find_tokenizer(out: Output) -> Any:
    """SD1.5's CLIP tokenizer from a local copy (a single-file checkpoint does not hold it)."""
    for source, sub in TOKENIZER_SOURCES:
        folder = Path(source).expanduser()
        if not folder.is_dir():
            wanted = (f"{sub}/*",) if sub else TOKENIZER_FILES
            snapshot = cached_snapshot(source, patterns=wanted) if HUB_ID.match(source) else None
            if snapshot is None:
                continue
            folder = snapshot
        folder = folder / sub if sub else folder
        if has_tokenizer_files(folder):
            return load_tokenizer_folder(folder, source)
    if not hub_offline():
        try:
            from huggingface_hub import snapshot_download

            out.info(f"fetching the CLIP tokenizer from {CLIP_TOKENIZER_REPO}")
            folder = Path(
                snapshot_download(CLIP_TOKENIZER_REPO, allow_patterns=list(TOKENIZER_FILES))
            )
            return load_tokenizer_folder(folder, CLIP_TOKENIZER_REPO)
        except VdirError:
            raise
        except Exception:
            pass
    raise ModelError(
        "single-file checkpoints need SD1.5's CLIP tokenizer, which is not available locally",
        hint=f"fetch it with: {download_command(CLIP_TOKENIZER_REPO, files=TOKENIZER_FILES)}",
    )
