"""The rows of the quality benchmark: which inversion and which edit controls each one runs.

Every row calls the same library functions `vdir invert` and `vdir edit` call (DDIM inversion,
``optimise_nulls`` with ``STDG``, ``run_edit_path``), in memory, without a project folder, so
the benchmark measures the method and not the file I/O. Rows that differ only in their edit
controls share one inversion (it is computed once per clip; each row is still charged its full
time and UNet work, as a user running that variant alone would pay it).

Inversions:

* ``full``: DDIM inversion with the source prompt, then per-frame null-text optimisation with
  STDG (coefficients swapped for background edits, as the paper does);
* ``shared``: the same with one null embedding shared by all frames (Video-P2P's null);
* ``no-stdg``: per-frame null-text optimisation without STDG;
* ``negative-prompt`` / ``negative-prompt-no-stdg``: `vdir invert --method negative-prompt`,
  the fast mode (the source prompt is the null, nothing optimised), with and without STDG;
* ``ddim``: plain DDIM inversion and no optimisation: the reconstruction is the classifier-free
  guided trajectory from z*_T with the empty-prompt null, the baseline null-text inversion
  fixes. It is computed once beforehand (2 UNet rows per step, counted) and stored as the
  "optimised trajectory" editing reads; a fused prompt-to-prompt loop would get it from the
  edit's own batch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from videodirector_cli import metrics
from videodirector_cli.settings.edit import EditSettings
from videodirector_cli.settings.invert import (
    DEFAULT_MAX_RATIO,
    InvertSettings,
    NullTextSettings,
    STDGSettings,
)

if TYPE_CHECKING:
    import torch

    from benchmarks.quality_cases import Case
    from videodirector_cli.diffusion.components import DiffusionModel
    from videodirector_cli.diffusion.trajectory import StoredInversion
    from videodirector_cli.diffusion.windows import WindowPlan


@dataclass(frozen=True)
class Row:
    name: str
    inversion: str
    """'full', 'shared', 'no-stdg', 'negative-prompt', 'negative-prompt-no-stdg' or 'ddim'."""
    sa1: bool = True
    sa2: bool = True
    cross: bool = True
    blend: bool = False
    mode: str = "refine"
    """Cross-attention mapping of the edit (`vdir edit --mode`)."""
    stdg_scale: float = 1.0
    """`vdir invert --stdg-scale` of the row's inversion (STDG rows only)."""
    about: str = ""

    @property
    def inversion_id(self) -> str:
        """Rows with the same id share one inversion per clip."""
        return self.inversion if self.stdg_scale == 1.0 else f"{self.inversion}@{self.stdg_scale:g}"


ROWS: tuple[Row, ...] = (
    Row("full", "full", about="per-frame null + STDG; SA-I, SA-II, cross-attention control"),
    Row("shared-null", "shared", about="one null shared by all frames"),
    Row("no-stdg", "no-stdg", about="null-text optimisation without STDG"),
    Row("no-sa1", "full", sa1=False, about="no SA-I (self-attention map injection)"),
    Row("no-sa2", "full", sa2=False, about="no SA-II (mutual self-attention)"),
    Row("no-cross", "full", cross=False, about="no cross-attention control"),
    Row("ddim+p2p", "ddim", sa1=False, sa2=False, about="plain DDIM inversion + prompt-to-prompt"),
    Row("full+blend", "full", blend=True, about="full method with --blend"),
    Row("replace", "full", mode="replace", about="full method, cross-attention --mode replace"),
    Row("stdg-scale-0.25", "full", stdg_scale=0.25, about="full method, --stdg-scale 0.25"),
    Row("stdg-scale-4", "full", stdg_scale=4.0, about="full method, --stdg-scale 4"),
    Row(
        "negative-prompt",
        "negative-prompt",
        about="fast inversion: the source prompt as the null (--method negative-prompt), STDG",
    ),
    Row(
        "negative-prompt-no-stdg",
        "negative-prompt-no-stdg",
        about="fast inversion without STDG: 1 UNet forward per step",
    ),
)
ROW_NAMES = tuple(row.name for row in ROWS)


@dataclass(frozen=True)
class MethodSettings:
    """The benchmark's settings: vdir's own defaults (settings/), with fewer steps."""

    steps: int = 5
    inner_steps: int = 2
    stdg_scale: float = 1.0
    max_ratio: float = DEFAULT_MAX_RATIO

    def inversion(self, kind: str, target: str) -> InvertSettings:
        """The settings `vdir invert` would run the inversion row ``kind`` with."""
        return InvertSettings(
            steps=self.steps,
            method="negative-prompt" if kind.startswith("negative-prompt") else "null-text",
            null_text=NullTextSettings(
                mode="shared" if kind == "shared" else "per-frame", inner_steps=self.inner_steps
            ),
            stdg=STDGSettings(
                enabled=kind not in ("no-stdg", "ddim", "negative-prompt-no-stdg"),
                target=target,
                scale=self.stdg_scale,
                max_ratio=self.max_ratio,
            ),
        )

    def edit(self, row: Row) -> EditSettings:
        """The settings `vdir edit` would run the row's edit with (masks: the edited region)."""
        return EditSettings(
            sa1=row.sa1, sa2=row.sa2, cross=row.cross, blend=row.blend, mode=row.mode
        )

    def identity(self) -> dict[str, Any]:
        """What the cached per-clip results depend on (the same numbers as before the settings
        moved to settings/, so old caches stay valid)."""
        invert, edit = self.inversion("full", "foreground"), EditSettings()
        return {
            "steps": self.steps,
            "inner_steps": self.inner_steps,
            "guidance_scale": invert.guidance_scale,
            "tau_s": edit.tau_s,
            "tau_c": edit.tau_c,
            "mode": edit.mode,
            "stdg_scale": self.stdg_scale,
            "max_ratio": self.max_ratio,
        }


@dataclass
class Inverted:
    stored: StoredInversion
    guidance_scale: float
    seconds: float
    forward_equivalents: float
    recon_psnr: float
    by_purpose: dict[str, float] = field(default_factory=dict)
    stdg_applied: float = 0.0
    """Mean over steps of the applied STDG ratio (after the bound; 0: STDG did nothing)."""
    stdg_bounded: float = 0.0
    """Share of the steps where the bound acted."""
    stdg_ratio_max: float = 0.0
    """Largest ratio before the bound."""
    windows: WindowPlan | None = None
    """The clip's temporal windows (diffusion/windows.py; one window up to the encodings)."""
    recon_seam: float | None = None
    """Seam score of the reconstruction (None with one window)."""


def _masks_tensor(masks: np.ndarray) -> torch.Tensor:
    import torch

    return torch.from_numpy(np.ascontiguousarray(masks))


def invert(model: DiffusionModel, case: Case, kind: str, settings: MethodSettings) -> Inverted:
    """One inversion of the case's source clip; times and counts it, decodes its reconstruction."""
    import torch

    from videodirector_cli.diffusion.cfg import classifier_free
    from videodirector_cli.diffusion.inversion import ddim_invert
    from videodirector_cli.diffusion.latents import decode_latents, encode_frames
    from videodirector_cli.diffusion.null_text import optimise_nulls, starting_null
    from videodirector_cli.diffusion.passes import PassCounter
    from videodirector_cli.diffusion.prompts import encode_prompts
    from videodirector_cli.diffusion.schedule import Schedule
    from videodirector_cli.diffusion.stdg import STDG
    from videodirector_cli.diffusion.trajectory import StoredInversion, TrajectoryStep
    from videodirector_cli.diffusion.windows import motion_limits, resolve_plan, windowed_noise

    target = "background" if case.kind == "background" else "foreground"
    invert_settings = settings.inversion(kind, target)
    scale = invert_settings.guidance_scale
    counter = PassCounter()
    started = time.perf_counter()
    schedule = Schedule.from_scheduler(model.scheduler, invert_settings.steps)
    clean = encode_frames(model, case.source.frames)
    cond, empty = encode_prompts(model, [case.source_prompt, ""]).to(torch.float32).split(1)
    frames = clean.shape[2]
    windows = resolve_plan(motion_limits(model.unet), frames, None, None)
    pivots = ddim_invert(model.unet, schedule, clean, cond, counter=counter, windows=windows)
    trajectory: list[TrajectoryStep] = []
    if kind == "ddim":
        latent = pivots[-1]
        with torch.no_grad():
            for index, timestep in enumerate(schedule.timesteps):
                eps_u, eps_c = (
                    windowed_noise(
                        model.unet,
                        latent,
                        timestep,
                        text,
                        windows,
                        counter=counter,
                        purpose="ddim-trajectory",
                    )
                    for text in (empty, cond)
                )
                nxt = schedule.denoise_step(latent, classifier_free(eps_u, eps_c, scale), index)
                trajectory.append(TrajectoryStep(index, timestep, empty, latent, nxt))
                latent = nxt
    else:
        stdg = None
        if invert_settings.stdg.enabled:
            stdg = STDG(
                model.unet,
                invert_settings.stdg,
                _masks_tensor(case.source.masks),
                (clean.shape[3], clean.shape[4]),
                counter=counter,
            )
        null_text = invert_settings.null_text
        null_is_prompt = invert_settings.method == "negative-prompt"
        trajectory = optimise_nulls(
            model.unet,
            schedule,
            pivots,
            cond,
            null_text,
            scale,
            null=starting_null(empty, cond, frames, null_text.mode, null_is_prompt),
            stdg=stdg,
            counter=counter,
            null_is_prompt=null_is_prompt,
            windows=windows,
        )
    stored = StoredInversion.from_steps(
        f"bench-{case.seed}-{kind}", list(schedule.timesteps), pivots, trajectory
    )
    seconds = time.perf_counter() - started
    reconstruction = decode_latents(model, stored.reconstruction)
    return Inverted(
        stored=stored,
        guidance_scale=scale,
        seconds=seconds,
        forward_equivalents=counter.forward_equivalents,
        recon_psnr=metrics.psnr(reconstruction, case.source.frames),
        by_purpose=dict(counter.by_purpose),
        stdg_applied=float(np.mean([s.applied_ratio for s in trajectory])),
        stdg_bounded=float(np.mean([s.bounded for s in trajectory])),
        stdg_ratio_max=max(s.guidance_ratio for s in trajectory),
        windows=windows,
        recon_seam=_seam(reconstruction, windows),
    )


def _seam(frames: np.ndarray, windows: WindowPlan | None) -> float | None:
    if windows is None or windows.single:
        return None
    return metrics.seam_score(frames, windows.boundaries())


def edit(
    model: DiffusionModel, case: Case, inverted: Inverted, row: Row, settings: MethodSettings
) -> tuple[np.ndarray, dict[str, Any]]:
    """The row's edit of the case from its inversion: decoded frames and cost."""
    from videodirector_cli.diffusion.editing import plan_edit, run_edit_path
    from videodirector_cli.diffusion.latents import decode_latents
    from videodirector_cli.diffusion.passes import PassCounter

    counter = PassCounter()
    started = time.perf_counter()
    plan = plan_edit(
        model,
        case.source_prompt,
        case.target_prompt,
        settings.edit(row),
        inverted.guidance_scale,
    )
    outcome = run_edit_path(
        model,
        inverted.stored,
        plan,
        masks=_masks_tensor(case.edit_region),
        counter=counter,
        windows=inverted.windows,
    )
    frames = decode_latents(model, outcome.latents)
    seconds = time.perf_counter() - started
    return frames, {
        "edit_seconds": seconds,
        "edit_forward_equivalents": counter.forward_equivalents,
        "controls_applied": dict(outcome.applied),
        "seam_score": _seam(frames, inverted.windows),
        "recon_seam_score": inverted.recon_seam,
    }


def vae_round_trip(model: DiffusionModel, case: Case) -> np.ndarray:
    """decode(encode(source)): the best any latent-space method can reproduce the clip."""
    from videodirector_cli.diffusion.latents import decode_latents, encode_frames

    return decode_latents(model, encode_frames(model, case.source.frames))
