"""Null-text optimisation (Mokady et al.), multi-frame as in VideoDirector, with STDG.

From the first denoising step (t = T) on, each step i:

1. the conditional noise prediction at z_t, once, without gradient (reused by every iteration);
2. STDG guidance G at z_t against the pivot z*_t, once (before the inner loop), scaled and
   bounded per frame against the conditional prediction of 1. (stdg_bound.py); the bounded G is
   what the step applies, stores and `vdir edit` replays;
3. up to ``inner_steps`` Adam updates of the null (lr = lr0 * (1 - i / 2T)) minimising
   MSE(DDIM step(z_t, CFG eps + sqrt(1 - alpha_bar_t) G), z*_{t_prev}); the loop stops early once
   the loss is below early_stop + i * early_stop_slope;
4. the latent advances with the final null. The forward that measures the loss of the current
   null IS that advance, so stopping (early or after the last update) costs no extra pass: per
   step 1 conditional forward + (n + 1) unconditional forwards + n backwards for n updates.

Negative-prompt inversion (Miyake et al. 2023; ``null_is_prompt``): the null IS the source
prompt's embedding, so eps_u + w (eps_c - eps_u) = eps_c for any w and nothing is optimised;
the unconditional forward would repeat the conditional one and is not run. Per step: 1
conditional forward (plus STDG's passes when on). `vdir edit` then uses the source prompt as
the negative prompt of the edited row, as that method does.

The null is a float32 leaf even when the UNet runs in half precision; Adam runs in float32. The
optimised null of step i initialises step i + 1, so a run resumed from a stored step continues
exactly as an uninterrupted one (every input of step i + 1 is stored in float32 after step i).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from videodirector_cli.diffusion.cfg import apply_guidance, classifier_free
from videodirector_cli.diffusion.passes import PassCounter
from videodirector_cli.diffusion.schedule import Schedule
from videodirector_cli.diffusion.stdg_bound import bound_guidance
from videodirector_cli.diffusion.trajectory import TrajectoryStep
from videodirector_cli.diffusion.unet_call import predict_noise
from videodirector_cli.diffusion.windows import windowed_noise
from videodirector_cli.errors import NumericalError

if TYPE_CHECKING:
    import torch

    from videodirector_cli.diffusion.stdg import STDG
    from videodirector_cli.diffusion.windows import WindowPlan
    from videodirector_cli.settings.invert import NullMode, NullTextSettings


def initial_null(empty: torch.Tensor, frames: int, mode: NullMode) -> torch.Tensor:
    """The starting null from the encoded negative prompt (1, L, D): per frame or shared."""
    import torch

    null = empty.detach().to(torch.float32)
    if mode == "per-frame":
        null = null.expand(frames, *null.shape[1:])
    return null.clone()


def starting_null(
    negative: torch.Tensor, cond: torch.Tensor, frames: int, mode: NullMode, null_is_prompt: bool
) -> torch.Tensor:
    """The null step 0 starts from: the encoded negative prompt, or for the negative-prompt
    method the source prompt itself, stored once (1, L, D) as it is the same for every frame."""
    if null_is_prompt:
        return initial_null(cond, frames, "shared")
    return initial_null(negative, frames, mode)


def optimise_nulls(
    unet,
    schedule: Schedule,
    pivots: torch.Tensor,
    cond: torch.Tensor,
    config: NullTextSettings,
    guidance_scale: float,
    *,
    null: torch.Tensor,
    latent: torch.Tensor | None = None,
    start_step: int = 0,
    stdg: STDG | None = None,
    counter: PassCounter | None = None,
    on_step: Callable[[TrajectoryStep], None] | None = None,
    windows: WindowPlan | None = None,
    null_is_prompt: bool = False,
) -> list[TrajectoryStep]:
    """Run steps ``start_step``.. of the optimisation; ``null`` and ``latent`` are what step
    ``start_step`` starts from (the initial null and z*_T for a fresh run). ``windows``: the
    clip's temporal windows (None or one window: the whole clip in every UNet call).
    ``null_is_prompt``: the negative-prompt method (``null`` is ``cond``; no updates, no
    unconditional pass)."""
    import torch

    steps = schedule.steps
    if pivots.shape[0] != steps + 1:
        raise ValueError(f"{pivots.shape[0]} pivots for {steps} steps")
    current = (pivots[steps] if latent is None else latent).to(torch.float32)
    null = null.detach().to(torch.float32)
    results = []
    for index in range(start_step, steps):
        timestep = schedule.timesteps[index]
        target = pivots[steps - index - 1].to(current.device, torch.float32)
        with torch.no_grad():
            eps_cond = windowed_noise(
                unet, current, timestep, cond, windows, counter=counter, purpose="conditional"
            )
        noise_scale = schedule.noise_scale(index)
        guidance, guidance_loss, bounded = None, 0.0, None
        if stdg is not None and stdg.active:
            pivot = pivots[steps - index].to(current.device, torch.float32)
            grad, guidance_loss = stdg.windowed_guidance(current, pivot, timestep, cond, windows)
            _check_finite(grad, "STDG guidance", index, timestep)
            assert eps_cond is not None  # a full forward always returns eps
            bounded = bound_guidance(
                grad, eps_cond, noise_scale, stdg.settings.scale, stdg.settings.max_ratio
            )
            guidance = bounded.guidance
        null = null.detach().clone().requires_grad_(True)
        problem = _StepProblem(
            unet, schedule, index, current, target, eps_cond, guidance, guidance_scale, counter
        )
        optimiser = torch.optim.Adam([null], lr=config.lr_at(index, steps))
        if null_is_prompt:
            loss_value, next_latent, updates = _prompt_as_null(problem)
        elif windows is None or windows.single:
            loss_value, next_latent, updates = _updates(problem, null, optimiser, config)
        else:
            loss_value, next_latent, updates = _windowed_updates(
                problem, null, optimiser, config, windows
            )
        next_latent = next_latent.detach()
        _check_finite(next_latent, "latent", index, timestep)
        result = TrajectoryStep(
            step=index,
            timestep=timestep,
            null=null.detach().clone(),
            latent=current,
            next_latent=next_latent,
            guidance=guidance,
            loss=loss_value,
            iterations=updates,
            guidance_loss=guidance_loss,
            guidance_ratio=bounded.ratio_max if bounded else 0.0,
            guidance_ratio_mean=bounded.ratio_mean if bounded else 0.0,
            applied_ratio=bounded.applied_mean if bounded else 0.0,
            bounded=bounded.bounded if bounded else False,
        )
        if on_step is not None:
            on_step(result)
        results.append(result)
        current = next_latent
        null = result.null
    return results


@dataclass
class _StepProblem:
    """What one step's updates of the null work on (fixed for the step)."""

    unet: Any
    schedule: Schedule
    index: int
    current: torch.Tensor
    target: torch.Tensor
    eps_cond: torch.Tensor
    guidance: torch.Tensor | None
    guidance_scale: float
    counter: PassCounter | None

    @property
    def timestep(self) -> int:
        return self.schedule.timesteps[self.index]

    def eps(self, eps_uncond: torch.Tensor, part: slice | None = None) -> torch.Tensor:
        """The step's guided eps from the unconditional one (of ``part``'s frames)."""
        cond, guidance = self.eps_cond, self.guidance
        if part is not None:
            cond = cond[:, :, part]
            guidance = None if guidance is None else guidance[:, :, part]
        return apply_guidance(
            classifier_free(eps_uncond, cond, self.guidance_scale),
            guidance,
            self.schedule.noise_scale(self.index),
        )


def _prompt_as_null(problem: _StepProblem) -> tuple[float, torch.Tensor, int]:
    """The negative-prompt method's step: eps_c + w (eps_c - eps_c) = eps_c, so no
    unconditional pass and nothing to optimise."""
    import torch

    p = problem
    eps = apply_guidance(p.eps_cond, p.guidance, p.schedule.noise_scale(p.index))
    next_latent = p.schedule.denoise_step(p.current, eps, p.index)
    loss = torch.nn.functional.mse_loss(next_latent, p.target)
    _check_finite(loss, "null-text loss", p.index, p.timestep)
    return float(loss), next_latent, 0


def _updates(
    problem: _StepProblem, null: torch.Tensor, optimiser: Any, config: NullTextSettings
) -> tuple[float, torch.Tensor, int]:
    """The step's Adam updates on the whole clip: (final loss, next latent, updates)."""
    import torch

    p = problem
    threshold = config.threshold_at(p.index)
    updates = 0
    while True:
        last = updates >= config.inner_steps
        with torch.set_grad_enabled(not last):
            eps_uncond = predict_noise(
                p.unet, p.current, p.timestep, null, counter=p.counter, purpose="null-text"
            )
            next_latent = p.schedule.denoise_step(p.current, p.eps(eps_uncond), p.index)
            loss = torch.nn.functional.mse_loss(next_latent, p.target)
        loss_value = float(loss.detach())
        _check_finite(loss.detach(), "null-text loss", p.index, p.timestep)
        if last or loss_value < threshold:
            return loss_value, next_latent, updates
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        if p.counter is not None:
            p.counter.add_backward(purpose="null-text")
        optimiser.step()
        updates += 1


def _windowed_updates(
    problem: _StepProblem,
    null: torch.Tensor,
    optimiser: Any,
    config: NullTextSettings,
    windows: WindowPlan,
) -> tuple[float, torch.Tensor, int]:
    """The step's Adam updates through temporal windows, memory bounded by one window.

    The loss over all frames, MSE(sum_k w_k x_k, z*) with x_k a window's DDIM step and w_k its
    blending weights (summing to one per frame), is bounded above by sum_k w_k MSE-terms of
    x_k (convexity), which splits into one term per window. Each window's term is
    backpropagated right after its forward (grads add up in the null's), then one Adam step.
    The loss that is reported and decides early stopping is the exact one of the blended
    latent, from the same forwards; when it stops early, that update's backwards were spent
    for nothing (they are counted).
    """
    import torch

    from videodirector_cli.diffusion.windows import slice_embeddings

    p = problem
    frames = p.current.shape[2]
    weights = windows.weights().to(p.current.device)
    threshold = config.threshold_at(p.index)
    updates = 0
    while True:
        last = updates >= config.inner_steps
        optimiser.zero_grad(set_to_none=True)
        eps_uncond = torch.zeros_like(p.current)
        for number, part in enumerate(windows.slices()):
            weight = weights[number, part].view(1, 1, -1, 1, 1)
            with torch.set_grad_enabled(not last):
                found = predict_noise(
                    p.unet,
                    p.current[:, :, part],
                    p.timestep,
                    slice_embeddings(null, 1, frames, part),
                    counter=p.counter,
                    purpose="null-text",
                )
                if not last:
                    stepped = p.schedule.denoise_step(
                        p.current[:, :, part], p.eps(found, part), p.index
                    )
                    share = (weight * (stepped - p.target[:, :, part]) ** 2).sum()
                    (share / p.target.numel()).backward()
                    if p.counter is not None:
                        p.counter.add_backward(purpose="null-text")
            eps_uncond[:, :, part] += weight * found.detach()
        next_latent = p.schedule.denoise_step(p.current, p.eps(eps_uncond), p.index)
        loss = torch.nn.functional.mse_loss(next_latent, p.target)
        loss_value = float(loss)
        _check_finite(loss, "null-text loss", p.index, p.timestep)
        if last or loss_value < threshold:
            return loss_value, next_latent, updates
        optimiser.step()
        updates += 1


def _check_finite(tensor: torch.Tensor, what: str, index: int, timestep: int) -> None:
    import torch

    if not bool(torch.isfinite(tensor).all()):
        raise NumericalError(
            f"the {what} became NaN or infinite at step {index} (timestep {timestep})",
            hint="the steps before it are saved; try --dtype fp32, a lower --lr or --cfg",
        )
