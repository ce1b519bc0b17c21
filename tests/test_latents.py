"""VAE latents: shapes, determinism, chunking that does not change results, size checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from videodirector_cli.diffusion.latents import (
    decode_latents,
    encode_frames,
    frames_to_tensor,
    tensor_to_frames,
)
from videodirector_cli.errors import UsageError


@pytest.fixture
def model(tiny_model):
    """The session's tiny model (conftest.py)."""
    return tiny_model


def clip(frames: int = 5, size: int = 24, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (frames, size, size, 3), dtype=np.uint8)


def test_encode_shape_and_dtype(model):
    latents = encode_frames(model, clip(5, 24))
    factor = model.vae_scale_factor
    assert latents.shape == (1, model.latent_channels, 5, 24 // factor, 24 // factor)
    assert latents.dtype == torch.float32


def test_encode_is_deterministic_and_uses_scaling_factor(model):
    frames = clip(3, 16)
    first = encode_frames(model, frames)
    torch.testing.assert_close(encode_frames(model, frames), first, rtol=0, atol=0)
    with torch.no_grad():
        mean = model.vae.encode(frames_to_tensor(frames)).latent_dist.mean
    expected = (mean * model.vae.config.scaling_factor).permute(1, 0, 2, 3).unsqueeze(0)
    torch.testing.assert_close(first, expected, rtol=0, atol=1e-6)


def test_chunking_matches_one_batch(model):
    frames = clip(7, 16, seed=1)
    whole = encode_frames(model, frames, chunk=7)
    for chunk in (1, 3):
        torch.testing.assert_close(
            encode_frames(model, frames, chunk=chunk), whole, atol=1e-5, rtol=0
        )
    decoded = decode_latents(model, whole, chunk=7)
    for chunk in (1, 4):
        # Batched convolutions may differ in the last float bit: a pixel can round the other way.
        diff = np.abs(decode_latents(model, whole, chunk=chunk).astype(int) - decoded)
        assert diff.max() <= 1
        assert (diff > 0).mean() < 0.01


def test_decode_shape_and_range(model):
    latents = encode_frames(model, clip(4, 16))
    frames = decode_latents(model, latents)
    assert frames.shape == (4, 16, 16, 3)
    assert frames.dtype == np.uint8


def test_sizes_not_multiple_of_vae_factor_are_refused(model):
    factor = model.vae_scale_factor
    with pytest.raises(UsageError, match=f"multiples of {factor}"):
        encode_frames(model, clip(2, factor * 4 + 1))


def test_frame_tensor_round_trip_is_exact():
    frames = clip(2, 8)
    tensor = frames_to_tensor(frames)
    assert tensor.shape == (2, 3, 8, 8)
    assert float(tensor.min()) >= -1.0 and float(tensor.max()) <= 1.0
    np.testing.assert_array_equal(tensor_to_frames(tensor), frames)
    with pytest.raises(ValueError):
        frames_to_tensor(frames.astype(np.float32))
