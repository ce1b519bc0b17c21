"""Fixtures for the editing tests: the tiny model and a stored inversion made without optimising.

Any null sequence gives a valid "optimised trajectory" as long as each stored latent is the
previous one advanced with the inversion's formula (cfg.py) and that step's null and guidance;
that is all editing relies on.
"""

from __future__ import annotations

import functools

import torch
from _helpers_tiny import fast_model_loader, tiny_model

from videodirector_cli.diffusion.cfg import apply_guidance, classifier_free
from videodirector_cli.diffusion.prompts import encode_prompt
from videodirector_cli.diffusion.schedule import Schedule
from videodirector_cli.diffusion.trajectory import StoredInversion, TrajectoryStep
from videodirector_cli.diffusion.unet_call import predict_noise

__all__ = ["fast_model_loader", "make_project_with_inversion", "tiny_model"]

SOURCE = "a brown bear walking on rocks"
FRAMES = 8
LATENT = 16
STEPS = 4
CFG = 8.5
"""vdir invert's default (the reference's eps_c + 7.5 (eps_c - eps_u))."""


def make_stored_inversion(
    model=None,
    prompt: str = SOURCE,
    steps: int = STEPS,
    frames: int = FRAMES,
    guidance: bool = True,
    shared_null: bool = False,
    seed: int = 1,
) -> StoredInversion:
    model = model or tiny_model()
    generator = torch.Generator().manual_seed(seed)
    schedule = Schedule.from_scheduler(model.scheduler, steps)
    cond = encode_prompt(model, prompt).float()
    empty = encode_prompt(model, "").float()
    latent = torch.randn(1, 4, frames, LATENT, LATENT, generator=generator)
    trajectory: list[TrajectoryStep] = []
    with torch.no_grad():
        for index in range(steps):
            rows = 1 if shared_null else frames
            null = empty.expand(rows, -1, -1) + 0.05 * torch.randn(
                rows, *empty.shape[1:], generator=generator
            )
            guide = 0.1 * torch.randn(latent.shape, generator=generator) if guidance else None
            t = schedule.timesteps[index]
            eps_cond = predict_noise(model.unet, latent, t, cond)
            eps_uncond = predict_noise(model.unet, latent, t, null)
            eps = apply_guidance(
                classifier_free(eps_uncond, eps_cond, CFG), guide, schedule.noise_scale(index)
            )
            nxt = schedule.denoise_step(latent, eps, index)
            trajectory.append(TrajectoryStep(index, t, null, latent, nxt, guide))
            latent = nxt
    latents = [step.latent for step in trajectory]
    pivots = torch.stack([trajectory[-1].next_latent, *reversed(latents)])
    return StoredInversion.from_steps("k" * 64, list(schedule.timesteps), pivots, trajectory)


@functools.lru_cache(maxsize=4)
def _cached_inversion(steps: int, frames: int) -> StoredInversion:
    return make_stored_inversion(tiny_model(), steps=steps, frames=frames)


def box_masks(frames: int = FRAMES, size: int = LATENT * 2) -> torch.Tensor:
    """(F, size, size) bool: a box in the middle of each frame, moving right one pixel a frame."""
    masks = torch.zeros(frames, size, size, dtype=torch.bool)
    for f in range(frames):
        masks[f, size // 4 : size // 2 + size // 8, size // 4 + f : size // 2 + f] = True
    return masks


def make_project_with_inversion(
    root, steps: int = 2, frames: int = 4, masks: bool = False, identity=None
):
    """A project folder holding frames, optionally masks, and one finished inversion.

    Frames are random 32x32 images (the tiny model's VAE halves them to 16x16 latents); the
    inversion is made up (see make_stored_inversion), not an inversion of those frames.
    """
    import numpy as np
    from _helpers_project import frames_record, inversion_params, masks_record

    from videodirector_cli.media.frames import write_mask, write_png
    from videodirector_cli.project import lineage
    from videodirector_cli.project.fingerprint import hash_files
    from videodirector_cli.project.manifest import InversionRecord, SourceInfo
    from videodirector_cli.project.store import Project
    from videodirector_cli.settings.invert import InvertSettings
    from videodirector_cli.stages.inversion_files import InversionFiles

    model = tiny_model()
    stored = _cached_inversion(steps, frames)
    project = Project.create(root)
    with project.writing("test"):
        project.manifest.prompt = SOURCE
        project.manifest.source = SourceInfo(
            path="synthetic.mp4", sha256="0" * 64, fps=8.0, width=32, height=32,
            frame_count=frames, output_fps=8.0, size=(32, 32), fit="crop",
        )  # fmt: skip
        images = np.random.default_rng(0).integers(0, 256, (frames, 32, 32, 3), dtype=np.uint8)
        frame_files = project.paths.frame_files(frames)
        for path, image in zip(frame_files, images):
            write_png(path, image)
        frames_hash = hash_files(frame_files)
        project.manifest.frames = frames_record(frames, frames_hash, 32)
        if masks:
            files = project.paths.mask_files(frames)
            for index, mask in enumerate(box_masks(frames).numpy()):
                write_mask(files[index], np.asarray(mask))
            project.manifest.masks = masks_record(frames_hash, hash_files(files))
        key = stored.key
        inversion = InversionFiles(project.paths.inversion_dir(key))
        inversion.save_pivots(key, stored.pivots, stored.timesteps)
        for step in stored.trajectory:
            inversion.save_step(key, step)
        params = inversion_params(
            SOURCE,
            settings=InvertSettings(steps=steps, guidance_scale=CFG),
            uses_mask=masks,
            model_identity=identity or dict(model.identity),
            key=key,
        )
        inversion.save_info({"params": params.model_dump(mode="json")})
        project.manifest.inversions[key] = InversionRecord(
            status="done",
            params=params,
            inputs=lineage.inputs_for(project.manifest, ["frames", "masks", "prompt"]),
            outputs={"inversion": inversion.content_hash(steps)},
        )
        project.manifest.current_inversion = key
        project.save()
    return project, stored
