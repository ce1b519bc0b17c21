"""What `vdir invert` records and says per step and at the end: losses, Adam updates and how
strong the STDG term was (before and after its bound, stdg_bound.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from videodirector_cli.project.fingerprint import short

if TYPE_CHECKING:
    from videodirector_cli.diffusion.trajectory import TrajectoryStep

BOUND_WARNING_SHARE = 0.25
"""Warn when the STDG bound acted in more than this share of the steps."""


class History:
    """The per-step numbers of the steps done so far (stored ones included, after a resume)."""

    def __init__(self, stored: list[TrajectoryStep]) -> None:
        self.losses: list[float] = []
        self.iterations: list[int] = []
        self.guidance_losses: list[float] = []
        self.ratios: list[float] = []
        self.ratios_mean: list[float] = []
        self.applied: list[float] = []
        self.bounded: list[bool] = []
        for step in stored:
            self.add(step)

    def add(self, step: TrajectoryStep) -> None:
        self.losses.append(float(step.loss))
        self.iterations.append(int(step.iterations))
        self.guidance_losses.append(float(step.guidance_loss))
        self.ratios.append(float(step.guidance_ratio))
        self.ratios_mean.append(float(step.guidance_ratio_mean))
        self.applied.append(float(step.applied_ratio))
        self.bounded.append(bool(step.bounded))

    def stdg_summary(self) -> dict[str, Any]:
        """Scalars a reader checks first: did STDG act, and did the bound cut it?"""
        if not self.ratios:
            return {}
        return {
            "stdg_ratio_max": max(self.ratios),
            "stdg_ratio_mean": sum(self.ratios_mean) / len(self.ratios_mean),
            "stdg_applied_mean": sum(self.applied) / len(self.applied),
            "stdg_bounded_steps": sum(self.bounded),
        }

    def metrics(self) -> dict[str, Any]:
        return {
            "losses": list(self.losses),
            "iterations": list(self.iterations),
            "guidance_losses": list(self.guidance_losses),
            "stdg_ratios": list(self.ratios),
            "stdg_ratios_mean": list(self.ratios_mean),
            "stdg_applied": list(self.applied),
            "stdg_bounded": list(self.bounded),
            **self.stdg_summary(),
            "last_loss": self.losses[-1] if self.losses else None,
        }

    def bound_warning(self, max_ratio: float) -> str | None:
        """One line when the bound acted in more than a quarter of the steps."""
        if not self.bounded:
            return None
        share = sum(self.bounded) / len(self.bounded)
        if share <= BOUND_WARNING_SHARE:
            return None
        return (
            f"the STDG bound acted in {sum(self.bounded)} of {len(self.bounded)} steps (ratio "
            f"up to {max(self.ratios):.3g}, limit {max_ratio:g}): lower --stdg-scale or "
            "--block-weights"
        )


def progress_fields(step: TrajectoryStep, stdg_on: bool) -> dict[str, Any]:
    fields: dict[str, Any] = {"loss": step.loss, "iters": step.iterations}
    if stdg_on:
        fields["stdg"] = step.guidance_ratio
        if step.bounded:
            fields["bounded"] = f"{step.applied_ratio:.3g}"
    return fields


def human_summary(key, steps, history: History, report, passes, done) -> str:
    losses, iterations = history.losses, history.iterations
    lines = [
        f"inversion {short(key)} done: {steps} steps"
        + (f" (resumed after step {done})" if done else "")
    ]
    if losses:
        lines.append(
            f"  null-text loss: last {losses[-1]:.3g}, max {max(losses):.3g}; "
            f"inner iterations {sum(iterations)} in all (mean {sum(iterations) / len(iterations):.1f})"
        )
    summary = history.stdg_summary()
    if summary and any(history.ratios):
        lines.append(
            f"  STDG term / eps: before the bound max {summary['stdg_ratio_max']:.3g}, mean "
            f"{summary['stdg_ratio_mean']:.3g}; applied mean {summary['stdg_applied_mean']:.3g}; "
            f"bound acted in {summary['stdg_bounded_steps']} of {len(history.ratios)} steps"
        )
    if report:
        o, p = report["optimised"], report["plain_ddim"]
        lines.append(
            f"  reconstruction: optimised latent MSE {o['latent_mse']:.3g}, PSNR {o['psnr']:.2f} dB; "
            f"plain DDIM (cfg {report['guidance_scale']:g}) {p['latent_mse']:.3g}, "
            f"{p['psnr']:.2f} dB; VAE alone {report['vae_psnr']:.2f} dB"
        )
    if passes.get("optimisation_per_step") is not None:
        lines.append(
            f"  UNet work: {passes['optimisation_per_step']:g} forward-equivalents per step, "
            f"{passes['forward_equivalents']:g} in all"
        )
    return "\n".join(lines)
