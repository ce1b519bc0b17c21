"""STDG's defaults on the trained toy model (issue 11, slow, about 4 min): on a benchmark clip
(8 of its 16 frames, 20 steps, 5 updates) where the previous guidance (per-block sums, no size
factor, no bound) was several times the noise prediction and lowered the reconstruction, the
default guidance keeps it within 0.3 dB of null-text inversion without STDG (measured: 27.8 vs
25.9 dB, i.e. higher)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import pytest

from benchmarks import quality_cases, quality_method
from videodirector_cli.settings.invert import InvertSettings

pytestmark = pytest.mark.slow

STEPS, INNER, FRAMES, CLIP = 20, 5, 8, 2
OLD_FACTOR = 2 * 16
"""The previous loss was sum_b w_b mean_b (2x the reference's mean over both blocks' layers,
with equal layer counts) with no h*w/64^2 factor (1/16 on the toy's 16x16 latents)."""


@functools.lru_cache(maxsize=1)
def toy():
    import torch

    from videodirector_cli.diffusion.loading import ModelSpec, load_model

    torch.set_num_threads(1)
    return load_model(ModelSpec(model="toy", device="cpu", dtype="fp32"))


@dataclass(frozen=True)
class _Previous(quality_method.MethodSettings):
    """The benchmark's settings with the previous guidance's effective weights, unbounded."""

    def inversion(self, kind: str, target: str) -> InvertSettings:
        chosen = super().inversion(kind, target)
        weights = tuple(OLD_FACTOR * w for w in chosen.stdg.block_weights)
        stdg = chosen.stdg.model_copy(update={"block_weights": weights, "max_ratio": 1e9})
        return chosen.model_copy(update={"stdg": stdg})


def _invert(kind: str, old: bool = False):
    model = toy()
    size = int(model.unet.config.sample_size) * model.vae_scale_factor
    case = quality_cases.make_case(CLIP, frames=FRAMES, size=size)
    kind_of = _Previous if old else quality_method.MethodSettings
    settings = kind_of(steps=STEPS, inner_steps=INNER)
    return quality_method.invert(model, case, kind, settings)


def test_the_default_guidance_keeps_the_reconstruction_where_the_old_one_wrecked_it():
    plain = _invert("no-stdg")
    default = _invert("full")
    old = _invert("full", old=True)
    print(
        f"recon PSNR: no STDG {plain.recon_psnr:.2f} dB, default STDG {default.recon_psnr:.2f} "
        f"(applied ratio {default.stdg_applied:.3g}, bound acted {default.stdg_bounded:.0%}), "
        f"previous guidance {old.recon_psnr:.2f} (ratio up to {old.stdg_ratio_max:.3g})"
    )
    # the failure the issue reports: a term several times the noise prediction, a worse
    # reconstruction (measured: ratio 6.1, 23.1 vs 25.9 dB; at 5 steps the issue saw 12.6 vs 24.7)
    assert old.stdg_ratio_max > 2.0 and old.recon_psnr < plain.recon_psnr - 1.0
    assert default.recon_psnr >= plain.recon_psnr - 0.3
    assert default.stdg_applied > 0  # STDG acted: not switched off by the bound
