"""``load_model``: what the user asked for -> one DiffusionModel on its device.

Finds the base model (built-in, folder, single file or hub id), adds the VAE override and the
motion modules, then moves everything to the device in the number format asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from videodirector_cli.diffusion.devices import dtype_name, oom_guard, resolve_device, resolve_dtype
from videodirector_cli.diffusion.loading.common import Parts, quiet_libraries
from videodirector_cli.diffusion.loading.folders import load_folder
from videodirector_cli.diffusion.loading.identity import (
    identity_of,
    pipeline_digest,
    scheduler_identity,
    short_identity,
)
from videodirector_cli.diffusion.loading.locate import (
    BASE_PATTERNS,
    BUILTIN_TINY,
    BUILTIN_TOY,
    DEFAULT_MODEL,
    DEFAULT_VAE,
    Reference,
    locate,
    parse_reference,
    report_all_missing_downloads,
)
from videodirector_cli.diffusion.loading.motion import attach_motion
from videodirector_cli.diffusion.loading.single_file import load_single_file_base
from videodirector_cli.diffusion.loading.vae import load_vae
from videodirector_cli.diffusion.schedule import make_ddim_scheduler
from videodirector_cli.errors import ModelError, UsageError
from videodirector_cli.output import Output

if TYPE_CHECKING:
    import torch

    from videodirector_cli.diffusion.components import DiffusionModel

TOY_WEIGHTS = Path(__file__).resolve().parents[2] / "toy" / "weights"
"""The built-in 'toy' model: an AnimateDiff pipeline folder shipped inside the package."""

LOAD_OOM_ADVICE = (
    "the model does not fit in GPU memory: use --dtype fp16 or bf16, or free the GPU of other work"
)


@dataclass
class ModelSpec:
    """What the user asked for; None means the default (see the DEFAULT_* constants).

    Hub ids (and hub files) may pin a revision: ``owner/name@REVISION``.
    """

    model: str | None = None
    motion_adapter: str | None = None
    vae: str | None = None
    device: str = "auto"
    dtype: str = "auto"


def load_model(spec: ModelSpec, output: Output | None = None) -> DiffusionModel:
    """Load the model ``spec`` names onto its device; raise ModelError/UsageError on bad input."""
    out = output or Output(mode="quiet")
    device = resolve_device(spec.device)
    dtype = resolve_dtype(spec.dtype, device)
    model = parse_reference(spec.model or DEFAULT_MODEL, "model")
    adapter = (
        parse_reference(spec.motion_adapter, "motion adapter") if spec.motion_adapter else None
    )
    vae_text = spec.vae if spec.vae is not None else (DEFAULT_VAE if spec.model is None else None)
    vae = parse_reference(vae_text, "VAE") if vae_text is not None else None
    if model.text == BUILTIN_TINY:
        return _load_tiny(spec, device, dtype, out)
    report_all_missing_downloads(model, adapter, vae)
    with oom_guard(LOAD_OOM_ADVICE), quiet_libraries():
        parts = _load_toy() if model.text == BUILTIN_TOY else _load_base(model, out)
        if vae is not None:
            parts.vae, parts.identity["vae"] = load_vae(vae, out)
        elif parts.vae is None:
            raise ModelError(
                f"{model.text} holds no VAE",
                hint="pass one with --vae (e.g. --vae stabilityai/sd-vae-ft-mse)",
            )
        attach_motion(parts, adapter, out)
        return _assemble(parts, device, dtype, out)


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
    with quiet_libraries():
        return build_tiny_model(device=device, dtype=dtype)


def _load_toy() -> Parts:
    if not (TOY_WEIGHTS / "unet" / "config.json").is_file():
        raise ModelError(
            f"the built-in 'toy' model's weights are not in this installation ({TOY_WEIGHTS})",
            hint="reinstall vdir, or use --model tiny for a dry run",
        )
    parts = load_folder(TOY_WEIGHTS, label="toy")
    parts.identity["model"] = f"builtin:toy:{pipeline_digest(TOY_WEIGHTS)}"
    return parts


def _load_base(ref: Reference, out: Output) -> Parts:
    located = locate(ref, "model", BASE_PATTERNS)
    if located.path.is_file():
        parts = load_single_file_base(located.path, out)
        parts.identity["model"] = identity_of(located, located.path)
        return parts
    parts = load_folder(located.path, label=located.label)
    if located.hub:
        parts.identity["model"] = f"hub:{located.hub}"
    else:
        digest = pipeline_digest(located.path)
        parts.identity["model"] = f"folder:{located.path.name}:sha256:{digest}"
    return parts


def _assemble(
    parts: Parts, device: torch.device, dtype: torch.dtype, out: Output
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
    parts.identity["scheduler"] = scheduler_identity(parts.scheduler_note)
    out.info(f"model ready on {device} in {dtype_name(dtype)} ({short_identity(parts.identity)})")
    return DiffusionModel(
        unet=parts.unet,
        vae=parts.vae,
        text_encoder=parts.text_encoder,
        tokenizer=parts.tokenizer,
        scheduler=make_ddim_scheduler(),
        device=device,
        dtype=dtype,
        identity=dict(parts.identity),
        meaningless=parts.meaningless,
    )
