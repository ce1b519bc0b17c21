"""How well an inversion reconstructs its clip, against plain DDIM inversion (the report of
`vdir invert`): latent MSE against z*_0 and decoded PSNR against the frames."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from videodirector_cli import metrics

if TYPE_CHECKING:
    import numpy as np
    import torch

    from videodirector_cli.diffusion.components import DiffusionModel
    from videodirector_cli.diffusion.passes import PassCounter
    from videodirector_cli.diffusion.schedule import Schedule
    from videodirector_cli.diffusion.windows import WindowPlan


def reconstruction_report(
    model: DiffusionModel,
    schedule: Schedule,
    pivots: torch.Tensor,
    optimised: torch.Tensor,
    cond: torch.Tensor,
    empty: torch.Tensor,
    guidance_scale: float,
    frames: np.ndarray,
    counter: PassCounter | None = None,
    windows: WindowPlan | None = None,
) -> dict[str, Any]:
    """The optimised inversion's end latent vs plain DDIM inversion sampled back with the same
    CFG and the negative prompt's embedding as the null (``empty``), and the VAE's own round
    trip (the ceiling of both). PSNR is
    ``metrics.psnr``: identical frames give its cap, never infinity."""
    from videodirector_cli.diffusion.inversion import sample_cfg
    from videodirector_cli.diffusion.latents import decode_latents

    device = model.device
    clean = pivots[0].to(device)
    plain = sample_cfg(
        model.unet,
        schedule,
        pivots[-1].to(device),
        cond,
        empty,
        guidance_scale,
        counter=counter,
        purpose="report",
        windows=windows,
    )
    optimised = optimised.to(device)
    ceiling = decode_latents(model, clean)
    decoded = decode_latents(model, optimised)
    report: dict[str, Any] = {
        "optimised": {
            "latent_mse": float(((optimised - clean) ** 2).mean()),
            "psnr": metrics.psnr(decoded, frames),
        },
        "plain_ddim": {
            "latent_mse": float(((plain - clean) ** 2).mean()),
            "psnr": metrics.psnr(decode_latents(model, plain), frames),
        },
        "vae_psnr": metrics.psnr(ceiling, frames),
        "guidance_scale": guidance_scale,
    }
    if windows is not None and not windows.single:
        report["seam_score"] = {
            "reconstruction": metrics.seam_score(decoded, windows.boundaries()),
            "source": metrics.seam_score(frames, windows.boundaries()),
        }
    opt_mse, plain_mse = report["optimised"]["latent_mse"], report["plain_ddim"]["latent_mse"]
    report["improvement"] = plain_mse / opt_mse if opt_mse else None
    return report
