"""Load the AnimateDiff model every diffusion stage works on, from wherever the weights are.

Accepted for ``--model``: a built-in name (``tiny``, ``toy``), a hub id, a local diffusers
folder (an AnimateDiff pipeline, or an SD1.5 pipeline that gets a motion adapter), or a single
SD1.5 ``.safetensors``/``.ckpt`` checkpoint. ``--motion-adapter``: a hub id, a folder, or an
original AnimateDiff motion-module file (``v3_sd15_mm.ckpt``). ``--vae``: a hub id, a folder or a
single file. docs/models.md is the user's side of this.

One module per job: ``locate`` (where weights are), ``folders`` (diffusers folders),
``single_file`` (LDM checkpoints), ``motion`` (motion modules), ``vae`` (the VAE override),
``identity`` (what identifies the weights), ``load`` (``load_model``, assembly).
"""

from videodirector_cli.diffusion.loading.identity import describe_identity, file_digest, hash_tree
from videodirector_cli.diffusion.loading.load import ModelSpec, load_model
from videodirector_cli.diffusion.loading.locate import (
    BUILTINS,
    CLIP_TOKENIZER_REPO,
    DEFAULT_MODEL,
    DEFAULT_MOTION_ADAPTER,
    DEFAULT_VAE,
    Reference,
    parse_reference,
)
from videodirector_cli.diffusion.loading.motion import (
    convert_motion_state,
    motion_config_from_state,
)
from videodirector_cli.diffusion.loading.single_file import checkpoint_kind, read_checkpoint

__all__ = [
    "BUILTINS",
    "CLIP_TOKENIZER_REPO",
    "DEFAULT_MODEL",
    "DEFAULT_MOTION_ADAPTER",
    "DEFAULT_VAE",
    "ModelSpec",
    "Reference",
    "checkpoint_kind",
    "convert_motion_state",
    "describe_identity",
    "file_digest",
    "hash_tree",
    "load_model",
    "motion_config_from_state",
    "parse_reference",
    "read_checkpoint",
]
