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
from typing import TYPE_CHECKING

from videodirector_cli.diffusion.cfg import apply_guidance, classifier_free
from videodirector_cli.diffusion.passes import PassCounter
from videodirector_cli.diffusion.schedule import Schedule
from videodirector_cli.diffusion.stdg_bound import bound_guidance
from videodirector_cli.diffusion.trajectory import TrajectoryStep
from videodirector_cli.diffusion.unet_call import predict_noise
from videodirector_cli.errors import NumericalError

if TYPE_CHECKING:
    import torch

    from videodirector_cli.diffusion.stdg import STDG
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
    null_is_prompt: bool = False,
) -> list[TrajectoryStep]:
    """Run steps ``start_step``.. of the optimisation; ``null`` and ``latent`` are what step
    ``start_step`` starts from (the initial null and z*_T for a fresh run). ``null_is_prompt``:
    the negative-prompt method (``null`` is ``cond``; no updates, no unconditional pass)."""
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
            eps_cond = predict_noise(
                unet, current, timestep, cond, counter=counter, purpose="conditional"
            )
        noise_scale = schedule.noise_scale(index)
        guidance, guidance_loss, bounded = None, 0.0, None
        if stdg is not None and stdg.active:
            pivot = pivots[steps - index].to(current.device, torch.float32)
            grad, guidance_loss = stdg.guidance(current, pivot, timestep, cond)
            _check_finite(grad, "STDG guidance", index, timestep)
            assert eps_cond is not None  # a full forward always returns eps
            bounded = bound_guidance(
                grad, eps_cond, noise_scale, stdg.settings.scale, stdg.settings.max_ratio
            )
            guidance = bounded.guidance
        null = null.detach().clone().requires_grad_(True)
        optimiser = torch.optim.Adam([null], lr=config.lr_at(index, steps))
        threshold = config.threshold_at(index)
        updates = 0
        while True:
            last = null_is_prompt or updates >= config.inner_steps
            with torch.set_grad_enabled(not last):
                if null_is_prompt:
                    guided = eps_cond  # eps_c + w (eps_c - eps_c)
                else:
                    eps_uncond = predict_noise(
                        unet, current, timestep, null, counter=counter, purpose="null-text"
                    )
                    guided = classifier_free(eps_uncond, eps_cond, guidance_scale)
                eps = apply_guidance(guided, guidance, noise_scale)
                next_latent = schedule.denoise_step(current, eps, index)
                loss = torch.nn.functional.mse_loss(next_latent, target)
            loss_value = float(loss.detach())
            _check_finite(loss.detach(), "null-text loss", index, timestep)
            if last or loss_value < threshold:
                break
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            if counter is not None:
                counter.add_backward(purpose="null-text")
            optimiser.step()
            updates += 1
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


def _check_finite(tensor: torch.Tensor, what: str, index: int, timestep: int) -> None:
    import torch

    if not bool(torch.isfinite(tensor).all()):
        raise NumericalError(
            f"the {what} became NaN or infinite at step {index} (timestep {timestep})",
            hint="the steps before it are saved; try --dtype fp32, a lower --lr or --cfg",
        )
