"""Where weights are: built-in names, local paths, hub ids and hub files in the local cache.

Look locally first and never touch the network when the weights are already here; when they are
not, say in one line what to fetch and how (an ``hf download`` command that works as printed).
A hub id or hub file may pin a revision, ``owner/name@REVISION``; the commit it resolves to is
part of the model identity.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from videodirector_cli.diffusion.loading.common import first_line
from videodirector_cli.errors import ModelError, UsageError

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
REVISION = re.compile(r"^[A-Za-z0-9][\w.-]*(?:/[\w.-]+)*$")
"""A branch, tag or commit name as git allows them (refs/pr/1 included), nothing a shell mangles."""

# What each role needs from a hub repo (the rest of a repo, e.g. single-file checkpoints, is skipped).
BASE_PATTERNS = (
    "model_index.json",
    "unet/*",
    "vae/*",
    "text_encoder/*",
    "tokenizer/*",
    "scheduler/*",
    "motion_adapter/*",  # AnimateDiff pipeline repos; not shown in download hints
)
ADAPTER_PATTERNS = ("config.json", "diffusion_pytorch_model.safetensors")
VAE_PATTERNS = ("config.json", "diffusion_pytorch_model.safetensors")

ROLE_OPTIONS = {"model": "--model", "motion adapter": "--motion-adapter", "VAE": "--vae"}


@dataclass(frozen=True)
class Reference:
    """One --model/--motion-adapter/--vae value, split into what to find and the pinned revision."""

    text: str
    """As the user typed it (what messages show)."""
    name: str
    """The path, built-in name, hub id or hub file, without ``@REVISION``."""
    revision: str | None = None
    """The branch, tag or commit pinned with ``@``; None: the repo's default branch."""


def parse_reference(text: str, role: str) -> Reference:
    """Split ``owner/name@REVISION`` (and ``owner/name/file.ckpt@REVISION``); paths stay whole.

    An existing path, or anything written as a path, is never split, so a folder whose name holds
    an '@' still loads.
    """
    text = text.strip()
    if "@" not in text or Path(text).expanduser().exists() or _written_as_path(text):
        return Reference(text, text)
    option = ROLE_OPTIONS.get(role, "--model")
    hint = f"to pin a hub revision, write {option} owner/name@BRANCH, @TAG or @COMMIT"
    name, _, revision = text.partition("@")
    if "@" in revision:
        raise UsageError(f"{option} {text!r} has more than one '@'", hint=hint)
    if not revision:
        raise UsageError(f"{option} {text!r} names no revision after '@'", hint=hint)
    if not (HUB_ID.match(name) or HUB_FILE.match(name)):
        raise UsageError(f"{option} {text!r}: only a hub id takes '@REVISION'", hint=hint)
    if not REVISION.match(revision) or ".." in revision:
        raise UsageError(f"{option} {text!r}: {revision!r} is not a revision name", hint=hint)
    return Reference(text, name, revision)


@dataclass
class Located:
    path: Path
    label: str  # what the user typed
    hub: str | None = None  # "repo@commit" (or "repo/file@commit") when it came from the hub cache


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _written_as_path(ref: str) -> bool:
    return ref.startswith((".", "/", "~")) or "\\" in ref


def looks_like_path(ref: str) -> bool:
    """A reference that can only mean a file or folder (so a miss is 'does not exist')."""
    if _written_as_path(ref):
        return True
    return ref.lower().endswith(SINGLE_FILE_SUFFIXES) and not HUB_FILE.match(ref)


def locate(ref: Reference, role: str, patterns: tuple[str, ...]) -> Located:
    """Find ``ref`` on disk: an existing path, or a hub id in the local cache (downloaded only
    when it is missing and HF_HUB_OFFLINE is not set)."""
    path = Path(ref.name).expanduser()
    if ref.revision is None and path.exists():
        return Located(path.resolve(), ref.text)
    if not looks_like_path(ref.name):
        file_match = HUB_FILE.match(ref.name)
        if file_match:
            return _locate_hub_file(ref, file_match.group(1), file_match.group(2), role)
        if HUB_ID.match(ref.name):
            return _locate_hub_repo(ref, role, patterns)
    raise ModelError(
        f"{role} {ref.text!r} does not exist",
        hint="check the path, or give a hub id such as owner/name",
    )


def download_command(
    repo: str,
    patterns: tuple[str, ...] = (),
    files: tuple[str, ...] = (),
    revision: str | None = None,
) -> str:
    """The ``hf download`` command that fetches what vdir needs, as a user can paste it.

    The ``hf`` CLI takes one pattern per ``--include`` (further words after one are read as file
    names, and then every --include is ignored), so each pattern gets its own flag.
    """
    words = ["hf", "download", repo, *files]
    for pattern in patterns:
        if pattern != "motion_adapter/*":
            words += ["--include", pattern]
    if revision is not None:
        words += ["--revision", revision]
    return " ".join(shlex.quote(word) for word in words)


def fetch_hint(role: str, command: str) -> str:
    option = ROLE_OPTIONS.get(role, "--model")
    return f"fetch it with: {command}, or pass {option} /path"


def cached_snapshot(
    repo: str, revision: str | None = None, patterns: tuple[str, ...] = ()
) -> Path | None:
    """The cached snapshot folder of ``repo`` at ``revision`` (default: the main branch), found
    without any network call; None unless it holds something ``patterns`` ask for."""
    import huggingface_hub

    try:
        folder = huggingface_hub.snapshot_download(
            repo,
            revision=revision,
            allow_patterns=list(patterns) or None,
            local_files_only=True,
        )
    except (OSError, ValueError):  # not cached, incomplete, or not a valid id/revision
        return None
    snapshot = Path(folder)
    return snapshot if snapshot.is_dir() and has_any(snapshot, patterns) else None


def has_any(folder: Path, patterns: tuple[str, ...]) -> bool:
    return any(any(folder.glob(p)) for p in patterns) if patterns else any(folder.iterdir())


def _not_local(role: str, ref: Reference) -> str:
    pinned = f" at revision {ref.revision}" if ref.revision else ""
    return f"{role} {ref.name}{pinned} is not available locally"


def _locate_hub_repo(ref: Reference, role: str, patterns: tuple[str, ...]) -> Located:
    snapshot = cached_snapshot(ref.name, ref.revision, patterns)
    if snapshot is None:
        snapshot = _download_repo(ref, role, patterns)
    return Located(snapshot, ref.text, hub=f"{ref.name}@{snapshot.name}")


def _download_repo(ref: Reference, role: str, patterns: tuple[str, ...]) -> Path:
    hint = fetch_hint(role, download_command(ref.name, patterns, revision=ref.revision))
    if hub_offline():
        raise ModelError(f"{_not_local(role, ref)} (HF_HUB_OFFLINE is set)", hint=hint)
    try:
        import huggingface_hub

        folder = huggingface_hub.snapshot_download(
            ref.name, revision=ref.revision, allow_patterns=list(patterns) or None
        )
    except Exception as exc:
        raise ModelError(
            f"{_not_local(role, ref)} and could not be downloaded ({first_line(exc)})", hint=hint
        ) from exc
    return Path(folder)


def _locate_hub_file(ref: Reference, repo: str, filename: str, role: str) -> Located:
    import huggingface_hub

    hint = fetch_hint(role, download_command(repo, files=(filename,), revision=ref.revision))
    try:
        found = huggingface_hub.hf_hub_download(
            repo, filename, revision=ref.revision, local_files_only=True
        )
    except (OSError, ValueError):
        if hub_offline():
            raise ModelError(
                f"{_not_local(role, ref)} (HF_HUB_OFFLINE is set)", hint=hint
            ) from None
        try:
            found = huggingface_hub.hf_hub_download(repo, filename, revision=ref.revision)
        except Exception as exc:
            raise ModelError(
                f"{_not_local(role, ref)} and could not be downloaded ({first_line(exc)})",
                hint=hint,
            ) from exc
    path = Path(found)
    commit = path.parents[len(Path(filename).parts) - 1].name  # .../snapshots/<commit>/<filename>
    return Located(path, ref.text, hub=f"{repo}/{filename}@{commit}")


def report_all_missing_downloads(
    model: Reference, adapter: Reference | None, vae: Reference | None
) -> None:
    """Offline, name every hub download still missing in one line (not one per attempt)."""
    if not hub_offline():
        return
    wanted: list[tuple[str, Reference, tuple[str, ...]]] = [("model", model, BASE_PATTERNS)]
    if adapter is not None or model.name == DEFAULT_MODEL:
        default = Reference(DEFAULT_MOTION_ADAPTER, DEFAULT_MOTION_ADAPTER)
        wanted.append(("motion adapter", adapter or default, ADAPTER_PATTERNS))
    if vae is not None:
        wanted.append(("VAE", vae, VAE_PATTERNS))
    missing: list[tuple[str, Reference, tuple[str, ...]]] = []
    for role, ref, patterns in wanted:
        if ref.revision is None and (
            ref.name in BUILTINS
            or Path(ref.name).expanduser().exists()
            or looks_like_path(ref.name)
        ):
            continue
        if not HUB_ID.match(ref.name):
            continue  # hub files and odd names get their own error later
        if cached_snapshot(ref.name, ref.revision, patterns) is None:
            missing.append((role, ref, patterns))
    if len(missing) < 2:
        return
    names = ", ".join(f"{role} {ref.text}" for role, ref, _ in missing)
    commands = "; ".join(
        download_command(ref.name, patterns, revision=ref.revision) for _, ref, patterns in missing
    )
    raise ModelError(
        f"not available locally (HF_HUB_OFFLINE is set): {names}",
        hint=f"fetch them with: {commands} (see docs/models.md), or pass local paths",
    )
