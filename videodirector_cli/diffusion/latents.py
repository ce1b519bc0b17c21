"""Video frames <-> VAE latents, a few frames at a time.

Encoding takes the posterior MEAN (no sampling) so that the same frames always give the same
latents, and with them the same inversion. Both directions work in chunks of frames: the SD VAE
decoder needs several GB for a batch of 16 512x512 frames, one chunk at a time bounds that. The
VAE treats every image on its own (GroupNorm is per sample), so chunking does not change results.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from videodirector_cli.errors import UsageError

if TYPE_CHECKING:
    import torch

    from videodirector_cli.diffusion.components import DiffusionModel

DEFAULT_CHUNK = 4
"""Frames per VAE call unless the model says otherwise (``DiffusionModel.vae_frames``, set by
the memory options): about 2-3 GB of activations for 512x512 frames in half precision."""


def check_frame_size(model: DiffusionModel, height: int, width: int) -> None:
    """Raise UsageError unless height and width are multiples of the VAE's downsampling."""
    factor = model.vae_scale_factor
    if height % factor or width % factor:
        raise UsageError(
            f"frames are {width}x{height}; this model needs sides that are multiples of {factor}",
            hint=f"re-import the clip with a --size whose sides are multiples of {factor}",
        )


def frames_to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 (F, H, W, 3) -> float32 (F, 3, H, W) in [-1, 1] (the VAE's input range)."""
    import torch

    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames (F, H, W, 3), got {frames.dtype} {frames.shape}")
    tensor = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    return tensor / 127.5 - 1.0


def tensor_to_frames(images: torch.Tensor) -> np.ndarray:
    """float (F, 3, H, W) in [-1, 1] -> uint8 (F, H, W, 3), rounded and clipped."""
    import torch

    scaled = ((images.detach().float().cpu() + 1.0) * 127.5).round().clamp(0, 255)
    return scaled.to(dtype=torch.uint8).permute(0, 2, 3, 1).numpy()


def _vae(model: DiffusionModel) -> Any:
    """The VAE as an untyped module (diffusers' classes confuse the type checker)."""
    return model.vae


def _vae_dtype_device(model: DiffusionModel) -> tuple[torch.dtype, torch.device]:
    """The VAE's dtype, and where it runs: model.device (offload.model_offload may keep its
    weights on the CPU between calls and brings them there when it runs)."""
    parameter = next(_vae(model).parameters())
    return parameter.dtype, model.device


def _shift(model: DiffusionModel) -> float:
    shift = getattr(_vae(model).config, "shift_factor", None)
    return float(shift) if shift is not None else 0.0


def _frames_per_call(model: DiffusionModel, chunk: int | None) -> int:
    return max(1, int(chunk if chunk is not None else getattr(model, "vae_frames", DEFAULT_CHUNK)))


def encode_frames(
    model: DiffusionModel, frames: np.ndarray, chunk: int | None = None
) -> torch.Tensor:
    """uint8 frames (F, H, W, 3) -> float32 latents (1, C, F, H/f, W/f), on model.device.

    Deterministic: the posterior mean times the VAE's scaling factor. ``chunk``: frames per VAE
    call (default ``model.vae_frames``).
    """
    import torch

    if frames.ndim != 4:
        raise ValueError(f"expected frames (F, H, W, 3), got shape {frames.shape}")
    check_frame_size(model, frames.shape[1], frames.shape[2])
    vae_dtype, vae_device = _vae_dtype_device(model)
    scale = float(_vae(model).config.scaling_factor)
    shift = _shift(model)
    chunk = _frames_per_call(model, chunk)
    parts = []
    with torch.no_grad():
        for start in range(0, frames.shape[0], chunk):
            pixels = frames_to_tensor(frames[start : start + chunk])
            pixels = pixels.to(device=vae_device, dtype=vae_dtype)
            mean = _vae(model).encode(pixels).latent_dist.mean
            parts.append(((mean.float() - shift) * scale).to(model.device))
    latents = torch.cat(parts)  # (F, C, h, w)
    return latents.permute(1, 0, 2, 3).unsqueeze(0).contiguous()


def decode_latents(
    model: DiffusionModel, latents: torch.Tensor, chunk: int | None = None
) -> np.ndarray:
    """Latents (1, C, F, h, w) -> uint8 frames (F, H, W, 3); ``chunk`` as in encode_frames."""
    import torch

    if latents.ndim != 5 or latents.shape[0] != 1:
        raise ValueError(f"expected latents (1, C, F, h, w), got shape {tuple(latents.shape)}")
    vae_dtype, vae_device = _vae_dtype_device(model)
    scale = float(_vae(model).config.scaling_factor)
    shift = _shift(model)
    per_frame = latents[0].permute(1, 0, 2, 3)  # (F, C, h, w)
    chunk = _frames_per_call(model, chunk)
    out = []
    with torch.no_grad():
        for start in range(0, per_frame.shape[0], chunk):
            part = per_frame[start : start + chunk].float() / scale + shift
            images = _vae(model).decode(part.to(device=vae_device, dtype=vae_dtype)).sample
            out.append(tensor_to_frames(images.clamp(-1, 1)))
    return np.concatenate(out)
