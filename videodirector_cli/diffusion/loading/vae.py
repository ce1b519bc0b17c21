"""The ``--vae`` override: a hub id, a VAE folder (or a model folder's vae/), or a single file."""

from __future__ import annotations

from typing import Any

from videodirector_cli.diffusion.loading.common import loading, read_config
from videodirector_cli.diffusion.loading.folders import DIFFUSERS_WEIGHTS, require_component
from videodirector_cli.diffusion.loading.identity import identity_of
from videodirector_cli.diffusion.loading.locate import VAE_PATTERNS, Reference, locate
from videodirector_cli.diffusion.loading.single_file import (
    checkpoint_kind,
    read_checkpoint,
    refuse_kind,
    vae_from_state,
)
from videodirector_cli.errors import ModelError
from videodirector_cli.output import Output


def load_vae(ref: Reference, out: Output) -> tuple[Any, str]:
    """The VAE ``ref`` names and its identity."""
    from diffusers import AutoencoderKL

    located = locate(ref, "VAE", VAE_PATTERNS)
    path = located.path
    if path.is_file():
        state = read_checkpoint(path)
        kind = checkpoint_kind(state)
        if kind not in ("vae", "sd"):
            refuse_kind(kind, path, "a VAE")
        return vae_from_state(state, path, out), identity_of(located, path)
    folder = path
    if not (folder / "config.json").is_file() and (folder / "vae" / "config.json").is_file():
        folder = folder / "vae"
    config = folder / "config.json"
    vae_kind = read_config(config).get("_class_name") if config.is_file() else None
    if vae_kind != "AutoencoderKL":
        raise ModelError(
            f"{ref.text} is not a VAE folder (config.json with _class_name AutoencoderKL, or a vae/ "
            "subfolder)"
        )
    variant = require_component(folder.parent, folder.name, DIFFUSERS_WEIGHTS, "the VAE")
    with loading("the VAE", folder):
        vae = AutoencoderKL.from_pretrained(folder, variant=variant)
    return vae, identity_of(located, folder)
