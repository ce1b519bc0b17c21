"""Load the AnimateDiff model every diffusion stage works on, from wherever the weights are.

Accepted for ``--model``: a built-in name (``tiny``, ``toy``), a hub id, a local diffusers
folder (an AnimateDiff pipeline, or an SD1.5 pipeline that gets a motion adapter), or a single
SD1.5 ``.safetensors``/``.ckpt`` checkpoint. ``--motion-adapter``: a hub id, a folder, or an
original AnimateDiff motion-module file (``v3_sd15_mm.ckpt``). ``--vae``: a hub id, a folder or a
single file. docs/models.md is the user's side of this.

Principles: look locally first and never touch the network when the weights are already here;
check folder layouts ourselves and name what is missing (diffusers' own errors read like network
problems); every failure is one ModelError line that says what to fetch and how.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from videodirector_cli.diffusion.devices import (
    dtype_name,
    is_out_of_memory,
    oom_guard,
    resolve_device,
    resolve_dtype,
)
from videodirector_cli.diffusion.schedule import ANIMATEDIFF_DDIM, make_ddim_scheduler
from videodirector_cli.errors import ModelError, UsageError, VdirError
from videodirector_cli.output import Output

if TYPE_CHECKING:
    import torch

    from videodirector_cli.diffusion.components import DiffusionModel

# --- defaults: the reference setup (AnimateDiff v3 motion module on Realistic Vision V6.0 B1) ---
DEFAULT_MODEL = "SG161222/Realistic_Vision_V6.0_B1_noVAE"
"""Realistic Vision V6.0 B1 in diffusers layout (the reference uses the same weights as one file)."""
DEFAULT_MOTION_ADAPTER = "guoyww/animatediff-motion-adapter-v1-5-3"
"""AnimateDiff v3 (v3_sd15_mm.ckpt) converted to a diffusers MotionAdapter."""
DEFAULT_VAE = "stabilityai/sd-vae-ft-mse"
"""The VAE baked into the reference's realisticVisionV60B1_v51VAE file; used with DEFAULT_MODEL."""
CLIP_TOKENIZER_REPO = "openai/clip-vit-large-patch14"
"""Where SD1.5's tokenizer comes from; single-file checkpoints do not contain it."""
TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json")

BUILTIN_TINY = "tiny"
BUILTIN_TOY = "toy"
BUILTINS = (BUILTIN_TINY, BUILTIN_TOY)

CONFIG_DIR = Path(__file__).with_name("configs")
SD15_CONFIG_DIR = CONFIG_DIR / "sd15"
"""diffusers configs of SD1.5's UNet, VAE and text encoder, for single-file checkpoints offline."""
MOTION_V3_CONFIG = CONFIG_DIR / "animatediff-v3" / "config.json"
TOY_WEIGHTS = Path(__file__).resolve().parents[1] / "toy" / "weights"

TOKENIZER_SOURCES: tuple[tuple[str, str], ...] = (
    (DEFAULT_MODEL, "tokenizer"),
    ("stable-diffusion-v1-5/stable-diffusion-v1-5", "tokenizer"),
    ("runwayml/stable-diffusion-v1-5", "tokenizer"),
    (CLIP_TOKENIZER_REPO, ""),
)
"""(hub id or folder, subfolder) searched, locally only, for a single file's tokenizer."""

SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")
DIFFUSERS_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
TRANSFORMERS_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
HUB_FILE = re.compile(r"^([A-Za-z0-9][\w.-]*/[\w.-]+)/(.+\.(?:safetensors|ckpt|pt|pth|bin))$")

LOAD_OOM_ADVICE = (
    "the model does not fit in GPU memory: use --dtype fp16 or bf16, or free the GPU of other work"
)

# AnimateDiff's DDIM settings (the reference and the AnimateDiff configs use exactly these).
DDIM_SETTINGS = ANIMATEDIFF_DDIM


@dataclass
class ModelSpec:
    """What the user asked for; None means the default (see the DEFAULT_* constants)."""

    model: str | None = None
    motion_adapter: str | None = None
    vae: str | None = None
    device: str = "auto"
    dtype: str = "auto"


@dataclass
class _Parts:
    """Components as loaded (CPU, fp32 or their stored dtype), before assembly."""

    unet: Any  # UNetMotionModel, or UNet2DConditionModel that still needs an adapter
    vae: Any | None
    text_encoder: Any
    tokenizer: Any
    identity: dict[str, str] = field(default_factory=dict)
    scheduler_note: str = ""
    meaningless: bool = False


# ----------------------------------------------------------------------------- public entry


def load_model(spec: ModelSpec, output: Output | None = None) -> DiffusionModel:
    """Load the model ``spec`` names onto its device; raise ModelError/UsageError on bad input."""
    out = output or Output(mode="quiet")
    device = resolve_device(spec.device)
    dtype = resolve_dtype(spec.dtype, device)
    name = (spec.model or DEFAULT_MODEL).strip()
    if name == BUILTIN_TINY:
        return _load_tiny(spec, device, dtype, out)
    vae_ref = spec.vae if spec.vae is not None else (DEFAULT_VAE if spec.model is None else None)
    _report_all_missing_downloads(name, spec.motion_adapter, vae_ref)
    with oom_guard(LOAD_OOM_ADVICE), _quiet_libraries():
        parts = _load_toy(out) if name == BUILTIN_TOY else _load_base(name, out)
        if vae_ref is not None:
            parts.vae, parts.identity["vae"] = _load_vae(vae_ref, out)
        elif parts.vae is None:
            raise ModelError(
                f"{name} holds no VAE",
                hint="pass one with --vae (e.g. --vae stabilityai/sd-vae-ft-mse)",
            )
        _attach_motion(parts, spec.motion_adapter, out)
        return _assemble(parts, device, dtype, out)


def _report_all_missing_downloads(model: str, adapter: str | None, vae: str | None) -> None:
    """Offline, name every hub download still missing in one line (not one per attempt)."""
    if not _hub_offline():
        return
    wanted: list[tuple[str, str, tuple[str, ...]]] = [("model", model, BASE_PATTERNS)]
    if adapter is not None or model == DEFAULT_MODEL:
        wanted.append(("motion adapter", adapter or DEFAULT_MOTION_ADAPTER, ADAPTER_PATTERNS))
    if vae is not None:
        wanted.append(("VAE", vae, VAE_PATTERNS))
    missing: list[tuple[str, str, tuple[str, ...]]] = []
    for role, ref, patterns in wanted:
        if ref in BUILTINS or Path(ref).expanduser().exists() or _looks_like_path(ref):
            continue
        if not HUB_ID.match(ref):
            continue  # hub files and odd names get their own error later
        snapshot = _cached_snapshot(ref)
        if snapshot is None or not _has_any(snapshot, patterns):
            missing.append((role, ref, patterns))
    if len(missing) < 2:
        return
    names = ", ".join(f"{role} {ref}" for role, ref, _ in missing)
    commands = "; ".join(
        f"hf download {ref} {_include_args(patterns)}".strip() for _, ref, patterns in missing
    )
    raise ModelError(
        f"not available locally (HF_HUB_OFFLINE is set): {names}",
        hint=f"fetch them with: {commands} (see docs/models.md), or pass local paths",
    )


def _short_identity(identity: dict[str, str]) -> str:
    shown = {k: re.sub(r"([0-9a-f]{12})[0-9a-f]{20,}", r"\1", v) for k, v in identity.items()}
    return describe_identity({k: v for k, v in shown.items() if k != "scheduler"})


def describe_identity(identity: dict[str, str]) -> str:
    """One line for messages: 'model=..., motion_adapter=..., vae=...'."""
    return ", ".join(f"{key}={value}" for key, value in identity.items())


# ----------------------------------------------------------------------------- built-ins


def _load_tiny(
    spec: ModelSpec, device: torch.device, dtype: torch.dtype, out: Output
) -> DiffusionModel:
    from videodirector_cli.diffusion.tiny import build_tiny_model

    if spec.motion_adapter or spec.vae:
        raise UsageError(
            "the built-in 'tiny' model has its own motion modules and VAE",
            hint="drop --motion-adapter/--vae, or pick a real --model",
        )
    out.warn("model 'tiny' has random weights (for tests and dry runs): its images are meaningless")
    with _quiet_libraries():
        return build_tiny_model(device=device, dtype=dtype)


def _load_toy(out: Output) -> _Parts:
    if not (TOY_WEIGHTS / "unet" / "config.json").is_file():
        raise ModelError(
            f"the built-in 'toy' model's weights are not in this installation ({TOY_WEIGHTS})",
            hint="reinstall vdir, or use --model tiny for a dry run",
        )
    parts = _load_folder(TOY_WEIGHTS, out, label="toy")
    parts.identity["model"] = f"builtin:toy:{_folder_digest(TOY_WEIGHTS, parts)}"
    return parts


# ----------------------------------------------------------------------------- where weights are


@dataclass
class _Located:
    path: Path
    label: str  # what the user typed
    hub: str | None = None  # "repo@commit" when it came from the hub cache


def _looks_like_path(ref: str) -> bool:
    """A reference that can only mean a file or folder (so a miss is 'does not exist')."""
    if ref.startswith((".", "/", "~")) or "\\" in ref:
        return True
    return ref.lower().endswith(SINGLE_FILE_SUFFIXES) and not HUB_FILE.match(ref)


def _locate(ref: str, role: str, patterns: tuple[str, ...]) -> _Located:
    """Find ``ref`` on disk: an existing path, or a hub id in the local cache (downloaded only
    when it is missing and HF_HUB_OFFLINE is not set)."""
    path = Path(ref).expanduser()
    if path.exists():
        return _Located(path.resolve(), ref)
    if not _looks_like_path(ref):
        file_match = HUB_FILE.match(ref)
        if file_match:
            return _locate_hub_file(ref, file_match.group(1), file_match.group(2), role)
        if HUB_ID.match(ref):
            return _locate_hub_repo(ref, role, patterns)
    raise ModelError(
        f"{role} {ref!r} does not exist",
        hint="check the path, or give a hub id such as owner/name",
    )


ROLE_OPTIONS = {"model": "--model", "motion adapter": "--motion-adapter", "VAE": "--vae"}


def _fetch_hint(role: str, repo: str, what: str = "") -> str:
    option = ROLE_OPTIONS.get(role, "--model")
    target = f"{repo} {what}".strip()
    return (
        f"fetch it with: hf download {target} (older clients: huggingface-cli download, same "
        f"arguments), or pass {option} /path"
    )


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _cached_snapshot(repo: str) -> Path | None:
    """The cached snapshot folder of ``repo``'s main branch, found without any network call."""
    from huggingface_hub import constants

    storage = Path(constants.HF_HUB_CACHE) / ("models--" + repo.replace("/", "--"))
    snapshots = storage / "snapshots"
    ref = storage / "refs" / "main"
    if ref.is_file():
        candidate = snapshots / ref.read_text().strip()
        if candidate.is_dir():
            return candidate
    if snapshots.is_dir():
        folders = sorted(
            (p for p in snapshots.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime
        )
        if folders:
            return folders[-1]
    return None


def _locate_hub_repo(repo: str, role: str, patterns: tuple[str, ...]) -> _Located:
    snapshot = _cached_snapshot(repo)
    if snapshot is None or not _has_any(snapshot, patterns):
        snapshot = _download_repo(repo, role, patterns)
    return _Located(snapshot, repo, hub=f"{repo}@{snapshot.name}")


def _has_any(folder: Path, patterns: tuple[str, ...]) -> bool:
    return any(any(folder.glob(p)) for p in patterns) if patterns else any(folder.iterdir())


def _download_repo(repo: str, role: str, patterns: tuple[str, ...]) -> Path:
    if _hub_offline():
        raise ModelError(
            f"{role} {repo} is not available locally (HF_HUB_OFFLINE is set)",
            hint=_fetch_hint(role, repo, _include_args(patterns)),
        )
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo, allow_patterns=list(patterns) or None))
    except Exception as exc:
        raise ModelError(
            f"{role} {repo} is not available locally and could not be downloaded "
            f"({_first_line(exc)})",
            hint=_fetch_hint(role, repo, _include_args(patterns)),
        ) from exc


def _include_args(patterns: tuple[str, ...]) -> str:
    shown = [p for p in patterns if p != "motion_adapter/*"]
    return ("--include " + " ".join(f"'{p}'" for p in shown)) if shown else ""


def _locate_hub_file(ref: str, repo: str, filename: str, role: str) -> _Located:
    from huggingface_hub import hf_hub_download

    try:
        found = hf_hub_download(repo, filename, local_files_only=True)
    except Exception:
        if _hub_offline():
            raise ModelError(
                f"{role} {ref} is not available locally (HF_HUB_OFFLINE is set)",
                hint=_fetch_hint(role, repo, filename),
            ) from None
        try:
            found = hf_hub_download(repo, filename)
        except Exception as exc:
            raise ModelError(
                f"{role} {ref} is not available locally and could not be downloaded "
                f"({_first_line(exc)})",
                hint=_fetch_hint(role, repo, filename),
            ) from exc
    path = Path(found)
    return _Located(path, ref, hub=f"{repo}/{filename}@{path.parent.name}")


# ----------------------------------------------------------------------------- base model


BASE_PATTERNS = (
    "model_index.json",
    "unet/*",
    "vae/*",
    "text_encoder/*",
    "tokenizer/*",
    "scheduler/*",
    "motion_adapter/*",
)


def _load_base(ref: str, out: Output) -> _Parts:
    located = _locate(ref, "model", BASE_PATTERNS)
    if located.path.is_file():
        parts = _load_single_file_base(located.path, out)
        parts.identity["model"] = _identity(located, located.path)
        return parts
    parts = _load_folder(located.path, out, label=located.label)
    if located.hub:
        parts.identity["model"] = f"hub:{located.hub}"
    else:
        digest = _folder_digest(located.path, parts)
        parts.identity["model"] = f"folder:{located.path.name}:sha256:{digest}"
    return parts


def _read_config(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path} is not a readable JSON config ({_first_line(exc)})") from exc
    if not isinstance(data, dict):
        raise ModelError(f"{path} is not a JSON object")
    return data


def _component_weights(folder: Path, names: tuple[str, ...]) -> tuple[list[Path], str | None]:
    """The weight files of a diffusers/transformers component folder, and the variant to ask for."""
    for name in names:
        if (folder / name).is_file():
            return [folder / name], None
        index = folder / f"{name}.index.json"
        if index.is_file():
            shards = sorted(set(_read_config(index).get("weight_map", {}).values()))
            return [index, *(folder / s for s in shards)], None
    for variant in ("fp16", "bf16"):
        for name in names:
            stem, suffix = name.rsplit(".", 1)
            candidate = folder / f"{stem}.{variant}.{suffix}"
            if candidate.is_file():
                return [candidate], variant
    return [], None


def _require_component(root: Path, sub: str, weights: tuple[str, ...], what: str) -> str | None:
    folder = root / sub
    if not folder.is_dir():
        raise ModelError(
            f"{root} has no {sub}/ folder ({what}): not a complete diffusers SD/AnimateDiff model"
        )
    config = "config.json"
    if not (folder / config).is_file():
        raise ModelError(f"{folder} has no {config}: the download looks incomplete")
    files, variant = _component_weights(folder, weights)
    if not files:
        raise ModelError(
            f"{folder} has no weights ({' or '.join(weights)}): the download looks incomplete",
            hint="fetch the missing files again (hf download ...)",
        )
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise ModelError(f"{folder} is missing weight shards: {', '.join(missing[:3])}")
    return variant


def _inspect_folder(root: Path, label: str) -> str:
    """'motion' (AnimateDiff pipeline) or '2d' (SD pipeline); ModelError for anything else."""
    unet_config = root / "unet" / "config.json"
    if not unet_config.is_file():
        root_config = root / "config.json"
        kind = _read_config(root_config).get("_class_name") if root_config.is_file() else None
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
    config = _read_config(unet_config)
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


def _load_folder(root: Path, out: Output, label: str) -> _Parts:
    """A diffusers pipeline folder: AnimateDiff (UNetMotionModel) or SD1.5 (UNet2DConditionModel)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel, UNetMotionModel
    from transformers import CLIPTextModel

    kind = _inspect_folder(root, label)
    unet_variant = _require_component(root, "unet", DIFFUSERS_WEIGHTS, "the denoising UNet")
    te_variant = _require_component(root, "text_encoder", TRANSFORMERS_WEIGHTS, "the text encoder")
    tokenizer = _load_tokenizer_folder(root / "tokenizer", label)
    has_vae = (root / "vae").is_dir()
    vae_variant = _require_component(root, "vae", DIFFUSERS_WEIGHTS, "the VAE") if has_vae else None
    _check_scheduler_config(root)
    unet_class = UNetMotionModel if kind == "motion" else UNet2DConditionModel
    with _loading("the UNet", root / "unet"):
        unet = unet_class.from_pretrained(root / "unet", variant=unet_variant)
    with _loading("the text encoder", root / "text_encoder"):
        text_encoder = CLIPTextModel.from_pretrained(root / "text_encoder", variant=te_variant)
    vae = None
    if has_vae:
        with _loading("the VAE", root / "vae"):
            vae = AutoencoderKL.from_pretrained(root / "vae", variant=vae_variant)
    parts = _Parts(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler_note=_scheduler_note(root),
    )
    _check_text_width(parts, label)
    return parts


def _load_tokenizer_folder(folder: Path, label: str) -> Any:
    from transformers import CLIPTokenizer

    if not folder.is_dir():
        raise ModelError(
            f"{label} has no tokenizer/ folder: not a complete diffusers SD/AnimateDiff model"
        )
    if not _has_tokenizer_files(folder):
        raise ModelError(
            f"{folder} lacks tokenizer.json or vocab.json + merges.txt: the download looks "
            "incomplete",
            hint="fetch the tokenizer/ files again (hf download ...)",
        )
    with _loading("the tokenizer", folder):
        tokenizer = CLIPTokenizer.from_pretrained(folder)
    if tokenizer.model_max_length > 100_000:  # a tokenizer_config without a length
        tokenizer.model_max_length = 77
    return tokenizer


def _has_tokenizer_files(folder: Path) -> bool:
    if (folder / "tokenizer.json").is_file():
        return True
    return (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file()


def _check_scheduler_config(root: Path) -> None:
    path = root / "scheduler" / "scheduler_config.json"
    if path.is_file() and _read_config(path).get("prediction_type") == "v_prediction":
        raise ModelError(
            f"{root} is a v-prediction model (SD2-style); AnimateDiff v3 needs an SD1.5-family "
            "epsilon model"
        )


def _scheduler_note(root: Path) -> str:
    path = root / "scheduler" / "scheduler_config.json"
    if not path.is_file():
        return ""
    return str(_read_config(path).get("_class_name", ""))


def _check_text_width(parts: _Parts, label: str) -> None:
    width = int(parts.text_encoder.config.hidden_size)
    cross = parts.unet.config.cross_attention_dim
    if cross is not None and int(cross if isinstance(cross, int) else cross[0]) != width:
        raise ModelError(
            f"{label}: the UNet expects text features of width {cross} but the text encoder "
            f"gives {width}; not an SD1.5-family model"
        )


# ----------------------------------------------------------------------------- single files


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
            f"{path} is not a readable weights file ({_first_line(exc)})",
            hint="check that the download finished; .ckpt files holding Python objects are "
            "refused for safety: convert them to .safetensors",
        ) from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state:
        raise ModelError(f"{path} holds no tensors")
    return state


UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIXES = ("cond_stage_model.transformer.text_model.", "cond_stage_model.transformer.")


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


def _refuse_kind(kind: str, path: Path, wanted: str) -> None:
    advice = {
        "motion": ("an AnimateDiff motion module", "pass it as --motion-adapter"),
        "vae": ("a VAE", "pass it as --vae"),
        "sdxl": ("an SDXL checkpoint", "AnimateDiff v3 needs an SD1.5-family model"),
        "sd": ("a full SD checkpoint", "pass it as --model"),
        "unknown": ("not a Stable Diffusion / AnimateDiff checkpoint", "check the file"),
    }[kind]
    raise ModelError(f"{path.name} is {advice[0]}, not {wanted}", hint=advice[1])


def _load_single_file_base(path: Path, out: Output) -> _Parts:
    from diffusers import AutoencoderKL, UNet2DConditionModel

    state = read_checkpoint(path)
    kind = checkpoint_kind(state)
    if kind != "sd":
        _refuse_kind(kind, path, "a base model")
    _check_sd15_checkpoint(state, path)
    out.info(f"loading single-file checkpoint {path.name} (SD1.5 configs shipped with vdir)")
    config = str(SD15_CONFIG_DIR)
    with _loading("the UNet", path):
        unet = UNet2DConditionModel.from_single_file(
            state, config=config, subfolder="unet", local_files_only=True
        )
    vae = None
    if any(k.startswith(VAE_PREFIX) for k in state):
        with _loading("the VAE", path):
            vae = AutoencoderKL.from_single_file(
                state, config=config, subfolder="vae", local_files_only=True
            )
    text_encoder = _text_encoder_from_state(state, path)
    tokenizer = _find_tokenizer(out)
    parts = _Parts(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer)
    _check_text_width(parts, path.name)
    return parts


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
    with _loading("the text encoder", path):
        model = CLIPTextModel(config)
        # transformers 4 nests the transformer under "text_model."; 5 does not.
        nested = any(k.startswith("text_model.") for k in model.state_dict())
        converted = {("text_model." + k if nested else k): v for k, v in bare.items()}
        result = model.load_state_dict(converted, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("position_ids")]
    unexpected = [k for k in result.unexpected_keys if not k.endswith("position_ids")]
    if missing or unexpected:
        sample = (missing or unexpected)[:2]
        raise ModelError(
            f"{path.name}: its text encoder does not match SD1.5's CLIP ViT-L/14 ({len(missing)} "
            f"missing, {len(unexpected)} unexpected tensors, e.g. {', '.join(sample)})"
        )
    return model


def _find_tokenizer(out: Output) -> Any:
    """SD1.5's CLIP tokenizer from a local copy (a single-file checkpoint does not hold it)."""
    for source, sub in TOKENIZER_SOURCES:
        folder = Path(source).expanduser()
        if not folder.is_dir():
            snapshot = _cached_snapshot(source) if HUB_ID.match(source) else None
            if snapshot is None:
                continue
            folder = snapshot
        folder = folder / sub if sub else folder
        if _has_tokenizer_files(folder):
            return _load_tokenizer_folder(folder, source)
    if not _hub_offline():
        try:
            from huggingface_hub import snapshot_download

            out.info(f"fetching the CLIP tokenizer from {CLIP_TOKENIZER_REPO}")
            folder = Path(
                snapshot_download(CLIP_TOKENIZER_REPO, allow_patterns=list(TOKENIZER_FILES))
            )
            return _load_tokenizer_folder(folder, CLIP_TOKENIZER_REPO)
        except VdirError:
            raise
        except Exception:
            pass
    raise ModelError(
        "single-file checkpoints need SD1.5's CLIP tokenizer, which is not available locally",
        hint=f"fetch it with: hf download {CLIP_TOKENIZER_REPO} {' '.join(TOKENIZER_FILES)}",
    )


# ----------------------------------------------------------------------------- motion adapter


ADAPTER_PATTERNS = ("config.json", "diffusion_pytorch_model.safetensors")


def _attach_motion(parts: _Parts, ref: str | None, out: Output) -> None:
    """Give the UNet its motion modules: from ``ref`` (or the default), unless it has them."""
    from diffusers import UNetMotionModel

    has_motion = isinstance(parts.unet, UNetMotionModel)
    if has_motion and ref is None:
        parts.identity["motion_adapter"] = "included"
        return
    adapter_ref = ref or DEFAULT_MOTION_ADAPTER
    adapter, parts.identity["motion_adapter"] = _load_adapter(adapter_ref, out)
    _check_adapter_fits(parts.unet, adapter, adapter_ref)
    with _loading("the motion adapter into the UNet", Path(adapter_ref)):
        if has_motion:
            out.info(f"replacing the model's motion modules with {adapter_ref}")
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


def _load_adapter(ref: str, out: Output) -> tuple[Any, str]:
    from diffusers import MotionAdapter

    located = _locate(ref, "motion adapter", ADAPTER_PATTERNS)
    path = located.path
    if path.is_file():
        return _adapter_from_file(path), _identity(located, path)
    config_path = path / "config.json"
    if not config_path.is_file() and (path / "motion_adapter" / "config.json").is_file():
        path = path / "motion_adapter"
        config_path = path / "config.json"
    kind = _read_config(config_path).get("_class_name") if config_path.is_file() else None
    if kind != "MotionAdapter":
        raise ModelError(
            f"{ref} is not a motion adapter folder (config.json with _class_name MotionAdapter)",
            hint="pass a folder saved by MotionAdapter.save_pretrained, a hub id, or an original "
            "motion-module file such as v3_sd15_mm.ckpt",
        )
    variant = _require_component(path.parent, path.name, DIFFUSERS_WEIGHTS, "the motion adapter")
    with _loading("the motion adapter", path):
        adapter = MotionAdapter.from_pretrained(path, variant=variant)
    return adapter, _identity(located, path)


def motion_config_from_state(state: dict[str, Any]) -> dict[str, Any]:
    """A MotionAdapter config read off an original motion-module file's tensor shapes.

    Starts from AnimateDiff v3's shipped config (heads and norm groups cannot be read off shapes)
    and takes channels, layers per block, mid block and positions from the file, so v1, v2 and
    v3 files all load.
    """
    config = _read_config(MOTION_V3_CONFIG)
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
        _refuse_kind(kind, path, "a motion module")
    config = motion_config_from_state(state)
    config.pop("_class_name", None)
    with _loading("the motion module", path):
        adapter: Any = MotionAdapter(**config)
        result = adapter.load_state_dict(convert_motion_state(state), strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("pos_embed.pe")]
    if missing or result.unexpected_keys:
        sample = (missing or list(result.unexpected_keys))[:2]
        raise ModelError(
            f"{path.name} does not match an AnimateDiff motion adapter ({len(missing)} missing, "
            f"{len(result.unexpected_keys)} unexpected tensors, e.g. {', '.join(sample)})"
        )
    return adapter.eval()


# ----------------------------------------------------------------------------- VAE override


VAE_PATTERNS = ("config.json", "diffusion_pytorch_model.safetensors")


def _load_vae(ref: str, out: Output) -> tuple[Any, str]:
    from diffusers import AutoencoderKL

    located = _locate(ref, "VAE", VAE_PATTERNS)
    path = located.path
    if path.is_file():
        state = read_checkpoint(path)
        kind = checkpoint_kind(state)
        if kind not in ("vae", "sd"):
            _refuse_kind(kind, path, "a VAE")
        with _loading("the VAE", path):
            vae = AutoencoderKL.from_single_file(
                state, config=str(SD15_CONFIG_DIR), subfolder="vae", local_files_only=True
            )
        return vae, _identity(located, path)
    folder = path
    if not (folder / "config.json").is_file() and (folder / "vae" / "config.json").is_file():
        folder = folder / "vae"
    vae_kind = (
        _read_config(folder / "config.json").get("_class_name")
        if (folder / "config.json").is_file()
        else None
    )
    if vae_kind != "AutoencoderKL":
        raise ModelError(
            f"{ref} is not a VAE folder (config.json with _class_name AutoencoderKL, or a vae/ "
            "subfolder)"
        )
    variant = _require_component(folder.parent, folder.name, DIFFUSERS_WEIGHTS, "the VAE")
    with _loading("the VAE", folder):
        vae = AutoencoderKL.from_pretrained(folder, variant=variant)
    return vae, _identity(located, folder)


# ----------------------------------------------------------------------------- assembly


def make_scheduler() -> Any:
    """DDIM with AnimateDiff's settings, whatever scheduler a model folder ships."""
    return make_ddim_scheduler()


def _scheduler_identity(replaced: str) -> str:
    base = "DDIM(linear 0.00085-0.012, steps_offset=1, epsilon)"
    return f"{base}; replaces {replaced}" if replaced and replaced != "DDIMScheduler" else base


def _assemble(
    parts: _Parts, device: torch.device, dtype: torch.dtype, out: Output
) -> DiffusionModel:
    import torch

    from videodirector_cli.diffusion.components import DiffusionModel

    if parts.vae is None:  # load_model guarantees a VAE; keep the type checker informed
        raise ModelError("no VAE was loaded", hint="pass one with --vae")
    vae_dtype = dtype
    if dtype == torch.float16:
        # SD's VAE overflows in fp16 at 512 px (NaN/black frames); bf16 has fp32's range.
        vae_dtype = torch.float32
        out.info("the VAE runs in fp32 (fp16 overflows in SD's VAE); the UNet runs in fp16")
    modules = ((parts.unet, dtype), (parts.text_encoder, dtype), (parts.vae, vae_dtype))
    for module, module_dtype in modules:
        module.eval().requires_grad_(False)
        module.to(device=device, dtype=module_dtype)
    parts.identity["scheduler"] = _scheduler_identity(parts.scheduler_note)
    out.info(f"model ready on {device} in {dtype_name(dtype)} ({_short_identity(parts.identity)})")
    return DiffusionModel(
        unet=parts.unet,
        vae=parts.vae,
        text_encoder=parts.text_encoder,
        tokenizer=parts.tokenizer,
        scheduler=make_scheduler(),
        device=device,
        dtype=dtype,
        identity=dict(parts.identity),
        meaningless=parts.meaningless,
    )


# ----------------------------------------------------------------------------- hashing


HASH_CACHE_MIN_BYTES = 1 << 20


def _hash_cache_path() -> Path:
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("vdir")) / "file-hashes.json"


def file_digest(path: Path) -> str:
    """sha256 of a file, cached by (path, size, mtime) so big checkpoints are hashed once."""
    from videodirector_cli.project.fingerprint import hash_file

    path = path.resolve()
    stat = path.stat()
    if stat.st_size < HASH_CACHE_MIN_BYTES:
        return hash_file(path)
    cache_path = _hash_cache_path()
    key = str(path)
    stamp = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    cache = _read_hash_cache(cache_path)
    entry = cache.get(key)
    if isinstance(entry, dict) and all(entry.get(k) == v for k, v in stamp.items()):
        return str(entry["sha256"])
    digest = hash_file(path)
    cache = _read_hash_cache(cache_path)  # re-read: another process may have added entries
    cache[key] = {**stamp, "sha256": digest}
    try:
        from videodirector_cli.project.atomic import atomic_write_json

        cache_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(cache_path, cache)
    except OSError:
        pass  # a read-only cache only costs time
    return digest


def _read_hash_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def hash_tree(folder: Path) -> str:
    """One sha256 over every file under ``folder`` (relative names included)."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        if any(part.startswith(".") for part in relative.split("/")):
            continue
        digest.update(relative.encode() + b"\0" + file_digest(path).encode() + b"\n")
    return digest.hexdigest()


def _identity(located: _Located, path: Path) -> str:
    """'hub:repo@commit' for hub downloads, else a content hash of the file or folder used."""
    if located.hub:
        return f"hub:{located.hub}"
    if path.is_file():
        return f"file:{path.name}:sha256:{file_digest(path)}"
    return f"folder:{path.name}:sha256:{hash_tree(path)}"


def _folder_digest(root: Path, parts: _Parts) -> str:
    """Hash of the component folders a model was loaded from (not unrelated files beside them)."""
    import hashlib

    digest = hashlib.sha256()
    for sub in ("unet", "text_encoder", "tokenizer", "vae", "motion_adapter"):
        if (root / sub).is_dir():
            digest.update(sub.encode() + b"\0" + hash_tree(root / sub).encode() + b"\n")
    return digest.hexdigest()


# ----------------------------------------------------------------------------- helpers


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


@contextmanager
def _loading(what: str, where: Path) -> Iterator[None]:
    """Turn a library's loading failure into one ModelError line naming the component."""
    try:
        yield
    except VdirError:
        raise
    except Exception as exc:
        if is_out_of_memory(exc):
            raise
        raise ModelError(
            f"could not load {what} from {where} ({type(exc).__name__}: {_first_line(exc)})",
            hint="the files may be incomplete or not an SD1.5/AnimateDiff model; fetch them again",
        ) from exc


@contextmanager
def _quiet_libraries() -> Iterator[None]:
    """diffusers/transformers log warnings and progress bars users cannot act on; mute them."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    verbosity = (diffusers_logging.get_verbosity(), transformers_logging.get_verbosity())
    bars = transformers_logging.is_progress_bar_enabled()
    diffusers_logging.set_verbosity_error()
    transformers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(verbosity[0])
        transformers_logging.set_verbosity(verbosity[1])
        diffusers_logging.enable_progress_bar()
        if bars:
            transformers_logging.enable_progress_bar()


__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_MOTION_ADAPTER",
    "DEFAULT_VAE",
    "ModelSpec",
    "load_model",
    "make_scheduler",
]
