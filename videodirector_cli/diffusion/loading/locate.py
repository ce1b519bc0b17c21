"""Where weights are: built-in names, local paths, hub ids and hub files in the local cache.

Look locally first and never touch the network when the weights are already here; when they are
not, say in one line what to fetch and how.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from videodirector_cli.diffusion.loading.common import first_line
from videodirector_cli.errors import ModelError

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

SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
HUB_FILE = re.compile(r"^([A-Za-z0-9][\w.-]*/[\w.-]+)/(.+\.(?:safetensors|ckpt|pt|pth|bin))$")

# What each role needs from a hub repo (the rest of a repo, e.g. single-file checkpoints, is skipped).
BASE_PATTERNS = (
    "model_index.json",
    "unet/*",
    "vae/*",
    "text_encoder/*",
    "tokenizer/*",
    "scheduler/*",
    "motion_adapter/*",
)
ADAPTER_PATTERNS = ("config.json", "diffusion_pytorch_model.safetensors")
VAE_PATTERNS = ("config.json", "diffusion_pytorch_model.safetensors")

ROLE_OPTIONS = {"model": "--model", "motion adapter": "--motion-adapter", "VAE": "--vae"}


@dataclass
class Located:
    path: Path
    label: str  # what the user typed
    hub: str | None = None  # "repo@commit" when it came from the hub cache


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def looks_like_path(ref: str) -> bool:
    """A reference that can only mean a file or folder (so a miss is 'does not exist')."""
    if ref.startswith((".", "/", "~")) or "\\" in ref:
        return True
    return ref.lower().endswith(SINGLE_FILE_SUFFIXES) and not HUB_FILE.match(ref)


def locate(ref: str, role: str, patterns: tuple[str, ...]) -> Located:
    """Find ``ref`` on disk: an existing path, or a hub id in the local cache (downloaded only
    when it is missing and HF_HUB_OFFLINE is not set)."""
    path = Path(ref).expanduser()
    if path.exists():
        return Located(path.resolve(), ref)
    if not looks_like_path(ref):
        file_match = HUB_FILE.match(ref)
        if file_match:
            return _locate_hub_file(ref, file_match.group(1), file_match.group(2), role)
        if HUB_ID.match(ref):
            return _locate_hub_repo(ref, role, patterns)
    raise ModelError(
        f"{role} {ref!r} does not exist",
        hint="check the path, or give a hub id such as owner/name",
    )


def fetch_hint(role: str, repo: str, what: str = "") -> str:
    option = ROLE_OPTIONS.get(role, "--model")
    target = f"{repo} {what}".strip()
    return (
        f"fetch it with: hf download {target} (older clients: huggingface-cli download, same "
        f"arguments), or pass {option} /path"
    )


def cached_snapshot(repo: str) -> Path | None:
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


def has_any(folder: Path, patterns: tuple[str, ...]) -> bool:
    return any(any(folder.glob(p)) for p in patterns) if patterns else any(folder.iterdir())


def _locate_hub_repo(repo: str, role: str, patterns: tuple[str, ...]) -> Located:
    snapshot = cached_snapshot(repo)
    if snapshot is None or not has_any(snapshot, patterns):
        snapshot = _download_repo(repo, role, patterns)
    return Located(snapshot, repo, hub=f"{repo}@{snapshot.name}")


def _download_repo(repo: str, role: str, patterns: tuple[str, ...]) -> Path:
    if hub_offline():
        raise ModelError(
            f"{role} {repo} is not available locally (HF_HUB_OFFLINE is set)",
            hint=fetch_hint(role, repo, include_args(patterns)),
        )
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo, allow_patterns=list(patterns) or None))
    except Exception as exc:
        raise ModelError(
            f"{role} {repo} is not available locally and could not be downloaded "
            f"({first_line(exc)})",
            hint=fetch_hint(role, repo, include_args(patterns)),
        ) from exc


def include_args(patterns: tuple[str, ...]) -> str:
    shown = [p for p in patterns if p != "motion_adapter/*"]
    return ("--include " + " ".join(f"'{p}'" for p in shown)) if shown else ""


def _locate_hub_file(ref: str, repo: str, filename: str, role: str) -> Located:
    from huggingface_hub import hf_hub_download

    try:
        found = hf_hub_download(repo, filename, local_files_only=True)
    except Exception:
        if hub_offline():
            raise ModelError(
                f"{role} {ref} is not available locally (HF_HUB_OFFLINE is set)",
                hint=fetch_hint(role, repo, filename),
            ) from None
        try:
            found = hf_hub_download(repo, filename)
        except Exception as exc:
            raise ModelError(
                f"{role} {ref} is not available locally and could not be downloaded "
                f"({first_line(exc)})",
                hint=fetch_hint(role, repo, filename),
            ) from exc
    path = Path(found)
    return Located(path, ref, hub=f"{repo}/{filename}@{path.parent.name}")


def report_all_missing_downloads(model: str, adapter: str | None, vae: str | None) -> None:
    """Offline, name every hub download still missing in one line (not one per attempt)."""
    if not hub_offline():
        return
    wanted: list[tuple[str, str, tuple[str, ...]]] = [("model", model, BASE_PATTERNS)]
    if adapter is not None or model == DEFAULT_MODEL:
        wanted.append(("motion adapter", adapter or DEFAULT_MOTION_ADAPTER, ADAPTER_PATTERNS))
    if vae is not None:
        wanted.append(("VAE", vae, VAE_PATTERNS))
    missing: list[tuple[str, str, tuple[str, ...]]] = []
    for role, ref, patterns in wanted:
        if ref in BUILTINS or Path(ref).expanduser().exists() or looks_like_path(ref):
            continue
        if not HUB_ID.match(ref):
            continue  # hub files and odd names get their own error later
        snapshot = cached_snapshot(ref)
        if snapshot is None or not has_any(snapshot, patterns):
            missing.append((role, ref, patterns))
    if len(missing) < 2:
        return
    names = ", ".join(f"{role} {ref}" for role, ref, _ in missing)
    commands = "; ".join(
        f"hf download {ref} {include_args(patterns)}".strip() for _, ref, patterns in missing
    )
    raise ModelError(
        f"not available locally (HF_HUB_OFFLINE is set): {names}",
        hint=f"fetch them with: {commands} (see docs/models.md), or pass local paths",
    )
