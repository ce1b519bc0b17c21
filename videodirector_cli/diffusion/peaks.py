"""Peak memory of one heavy pass, measured on the meta device: the model's components built
from their configs (architecture.py), the pass played under ``memtrack.MemoryTracker`` with the
memory plan's options applied for real. Cached per process and, when asked, on disk: a
real-shape pass takes seconds."""

from __future__ import annotations

import json
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from videodirector_cli.diffusion import offload, workloads
from videodirector_cli.diffusion.architecture import Architecture
from videodirector_cli.diffusion.flops import StdgPasses

if TYPE_CHECKING:
    import torch


_MODELS: dict[tuple[str, str, str], Any] = {}
_PEAKS: dict[str, int] = {}
ESTIMATE_VERSION = 1
"""Part of every cache key: bump when a workload or the tracker changes what it measures."""


def _meta_module(arch: Architecture, which: str, dtype: torch.dtype) -> Any:
    key = (arch.fingerprint(), which, str(dtype))
    if key not in _MODELS:
        build = {
            "unet": arch.build_unet,
            "vae": arch.build_vae,
            "text_encoder": arch.build_text_encoder,
        }[which]
        _MODELS[key] = build(dtype)
    return _MODELS[key]


def _clone(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Sequential offload's copy on the meta device: a new (tracked) tensor, as on CUDA."""
    return tensor.clone()


def phase_peak(
    arch: Architecture,
    workload: str,
    shape: workloads.Shape,
    dtype: torch.dtype,
    *,
    checkpointing: bool = False,
    sequential: bool = False,
    vae_frames: int = 4,
    passes: StdgPasses | None = None,
    cache_dir: Path | None = None,
) -> int:
    """Tracked peak bytes of one workload on the meta device, cached per process and, with
    ``cache_dir``, in ``cache_dir/estimates.json`` (a real-shape workload takes seconds)."""
    import torch

    from videodirector_cli.diffusion.memtrack import MemoryTracker

    key_parts = [ESTIMATE_VERSION, torch.__version__, arch.fingerprint(), workload]
    key_parts += [asdict(shape), str(dtype), checkpointing, sequential]
    key_parts += [vae_frames if workload.startswith("vae") else 0]
    key_parts += [None if passes is None else asdict(passes)]
    key = json.dumps(key_parts, default=list)
    if key not in _PEAKS and cache_dir is not None:
        _PEAKS.update(_read_cache(cache_dir))
    if key in _PEAKS:
        return _PEAKS[key]
    tracker = MemoryTracker()
    if workload.startswith("vae"):
        vae = _meta_module(arch, "vae", _vae_dtype(dtype))
        run = workloads.vae_decode if workload == "vae-decode" else workloads.vae_encode
        with tracker:
            run(vae, shape, "meta", vae_frames)
    else:
        unet = _meta_module(arch, "unet", dtype)
        with ExitStack() as stack:
            if checkpointing:
                stack.enter_context(offload.gradient_checkpointing(unet))
            if sequential:
                stack.enter_context(offload.sequential_offload(unet, "meta", "meta", _clone))
            with tracker:
                if workload == "forward":
                    workloads.forward(unet, shape, "meta")
                elif workload == "null-text":
                    workloads.null_text_update(unet, shape, "meta", stdg=passes is not None)
                elif workload == "stdg":
                    workloads.stdg_guidance(unet, shape, "meta", passes or StdgPasses())
                elif workload in ("edit-sa1", "edit-sa2"):
                    workloads.edit_call(unet, shape, "meta", workload.removeprefix("edit-"))
                else:
                    raise ValueError(f"unknown workload {workload!r}")
    _PEAKS[key] = tracker.peak
    if cache_dir is not None:
        _write_cache(cache_dir, key, tracker.peak)
    return tracker.peak


def _cache_file(cache_dir: Path) -> Path:
    return Path(cache_dir) / "estimates.json"


def _read_cache(cache_dir: Path) -> dict[str, int]:
    try:
        data = json.loads(_cache_file(cache_dir).read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): int(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _write_cache(cache_dir: Path, key: str, peak: int) -> None:
    """Best effort: an unwritable cache only costs the next run the measurement again."""
    import os
    import tempfile

    try:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        data = {**_read_cache(cache_dir), key: peak}
        handle, temp = tempfile.mkstemp(dir=cache_dir, suffix=".tmp")
        with os.fdopen(handle, "w") as stream:
            json.dump(data, stream)
        os.replace(temp, _cache_file(cache_dir))
    except OSError:
        pass


def _vae_dtype(dtype: torch.dtype) -> torch.dtype:
    """The VAE runs in fp32 when the UNet runs in fp16 (loading/load.py)."""
    import torch

    return torch.float32 if dtype == torch.float16 else dtype


def weight_bytes(arch: Architecture, dtype: torch.dtype) -> dict[str, int]:
    from videodirector_cli.diffusion.memtrack import tensor_bytes

    return {
        "unet": tensor_bytes(_meta_module(arch, "unet", dtype)),
        "vae": tensor_bytes(_meta_module(arch, "vae", _vae_dtype(dtype))),
        "text_encoder": tensor_bytes(_meta_module(arch, "text_encoder", dtype)),
    }
