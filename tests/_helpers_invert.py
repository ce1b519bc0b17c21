"""Fixtures for the inversion tests: a small project (4 frames of 16x16, latents 8x8 with the
tiny model); the tiny model and its loader are _helpers_tiny's."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from _helpers_tiny import fast_model_loader, tiny_model

__all__ = ["fast_model_loader", "make_invert_project", "tiny_model"]

PROMPT = "a red ball rolling"
FRAMES = 4
SIZE = 16


def ball_frames(count: int = FRAMES, size: int = SIZE) -> np.ndarray:
    """A bright disk moving right on a gradient background: smooth, deterministic frames."""
    y, x = np.mgrid[0:size, 0:size]
    frames = np.zeros((count, size, size, 3), dtype=np.uint8)
    for index in range(count):
        frames[index, ..., 0] = (x * 255 // size).astype(np.uint8)
        frames[index, ..., 2] = (y * 255 // size).astype(np.uint8)
        disk = (x - (4 + 2 * index)) ** 2 + (y - size // 2) ** 2 <= (size // 5) ** 2
        frames[index][disk] = (240, 220, 30)
    return frames


def ball_masks(count: int = FRAMES, size: int = SIZE) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size]
    return np.stack(
        [(x - (4 + 2 * i)) ** 2 + (y - size // 2) ** 2 <= (size // 4) ** 2 for i in range(count)]
    )


def make_invert_project(
    root: Path, masks: bool = False, prompt: str | None = PROMPT, mask_count: int | None = None
):
    """A project as `vdir init` (and optionally `vdir mask`) leaves it."""
    from _helpers_project import frames_record, masks_record

    from videodirector_cli.media.frames import write_mask, write_png
    from videodirector_cli.project.fingerprint import hash_files
    from videodirector_cli.project.store import Project

    frames = ball_frames()
    project = Project.create(root)
    with project.writing("test"):
        project.manifest.prompt = prompt
        files = project.paths.frame_files(len(frames))
        for path, image in zip(files, frames, strict=True):
            write_png(path, image)
        frames_hash = hash_files(files)
        project.manifest.frames = frames_record(len(frames), frames_hash, SIZE)
        if masks:
            count = mask_count or len(frames)
            mask_files = project.paths.mask_files(count)
            for path, mask in zip(mask_files, ball_masks(count), strict=True):
                write_mask(path, mask)
            project.manifest.masks = masks_record(frames_hash, hash_files(mask_files))
        project.save()
    return Project.open(root)


@functools.lru_cache(maxsize=2)
def small_inversion(frames: int = FRAMES, steps: int = 3):
    """The tiny model, a schedule, both prompt embeddings and DDIM pivots of a fixed random
    latent at 8x8 (shared by the null-text and STDG-bound tests; built once per process)."""
    import torch

    from videodirector_cli.diffusion.inversion import ddim_invert
    from videodirector_cli.diffusion.prompts import encode_prompt
    from videodirector_cli.diffusion.schedule import Schedule

    model = tiny_model()
    schedule = Schedule.from_scheduler(model.scheduler, steps)
    cond, empty = encode_prompt(model, PROMPT), encode_prompt(model, "")
    clean = 0.8 * torch.randn(1, 4, frames, 8, 8, generator=torch.Generator().manual_seed(1))
    pivots = ddim_invert(model.unet, schedule, clean, cond)
    return model, schedule, cond, empty, pivots
