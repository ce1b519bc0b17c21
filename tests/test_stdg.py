"""STDG: the guidance lowers its loss, costs one reference forward + one forward and backward,
nothing at all for zero coefficients, and stops the UNet after the last block it reads."""

from __future__ import annotations

import functools

import pytest
import torch
from _helpers_invert import PROMPT, ball_masks, tiny_model

from videodirector_cli.diffusion.cfg import GUIDANCE_SIGN, apply_guidance, classifier_free
from videodirector_cli.diffusion.inversion import ddim_invert
from videodirector_cli.diffusion.passes import PassCounter
from videodirector_cli.diffusion.prompts import encode_prompt
from videodirector_cli.diffusion.schedule import Schedule
from videodirector_cli.diffusion.stdg import STDG, coefficients, layer_size
from videodirector_cli.diffusion.unet_call import predict_noise
from videodirector_cli.settings.invert import STDGSettings

STEPS, CFG = 5, 7.5


@functools.lru_cache(maxsize=1)
def setup():
    """Pivots of a random clip, and z_t one plain CFG step off the pivot trajectory."""
    model = tiny_model()
    schedule = Schedule.from_scheduler(model.scheduler, STEPS)
    cond, empty = encode_prompt(model, PROMPT), encode_prompt(model, "")
    clean = 0.8 * torch.randn(1, 4, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    pivots = ddim_invert(model.unet, schedule, clean, cond)
    latent = pivots[STEPS]
    t = schedule.timesteps[0]
    eps = classifier_free(
        predict_noise(model.unet, latent, t, empty), predict_noise(model.unet, latent, t, cond), CFG
    )
    drifted = schedule.denoise_step(latent, eps, 0)
    return model, schedule, cond, empty, pivots, drifted


def _stdg(counter=None, masks=True, **coefficients):
    model = tiny_model()
    mask = torch.from_numpy(ball_masks()) if masks else None
    return STDG(model.unet, STDGSettings(**coefficients), mask, (8, 8), counter)


def test_a_guided_ddim_step_lowers_the_guidance_loss_at_the_next_timestep():
    """Step 1 from a latent that drifted off the pivots: with the guidance the new latent's
    features at t_prev are closer to the pivot's than without it, and the opposite sign (the
    reference's minus) is worse than both. This fixes cfg.GUIDANCE_SIGN."""
    model, schedule, cond, empty, pivots, z_t = setup()
    stdg = _stdg()
    index, t, t_prev = 1, schedule.timesteps[1], schedule.timesteps[2]
    guidance, loss_now = stdg.guidance(z_t, pivots[STEPS - 1], t, cond)
    assert loss_now > 0
    eps = classifier_free(
        predict_noise(model.unet, z_t, t, empty), predict_noise(model.unet, z_t, t, cond), CFG
    )
    reference = stdg.reference(pivots[STEPS - 2], t_prev, cond)

    def loss_after(g):
        step = schedule.denoise_step(
            z_t, apply_guidance(eps, g, schedule.noise_scale(index)), index
        )
        return stdg.loss_at(step, t_prev, cond, reference)

    unguided, guided, flipped = loss_after(None), loss_after(guidance), loss_after(-guidance)
    print(
        f"STDG loss after the step: unguided {unguided:.4g}, guided {guided:.4g}, "
        f"opposite sign {flipped:.4g}"
    )
    assert GUIDANCE_SIGN == 1.0
    assert guided < 0.99 * unguided and flipped > 1.01 * unguided


def test_guidance_is_the_gradient_of_the_loss():
    _, schedule, cond, _, pivots, z_t = setup()
    stdg = _stdg()
    t = schedule.timesteps[1]
    guidance, loss = stdg.guidance(z_t, pivots[STEPS - 1], t, cond)
    reference = stdg.reference(pivots[STEPS - 1], t, cond)
    assert stdg.loss_at(z_t, t, cond, reference) == pytest.approx(loss, rel=1e-5)
    step = 1e-3 / float(guidance.norm())
    assert stdg.loss_at(z_t - step * guidance, t, cond, reference) < loss
    assert stdg.loss_at(z_t + step * guidance, t, cond, reference) > loss


def test_one_reference_forward_one_forward_and_one_backward_per_step():
    _, schedule, cond, _, pivots, z_t = setup()
    counter = PassCounter()
    stdg = _stdg(counter)
    stdg.guidance(z_t, pivots[STEPS - 1], schedule.timesteps[1], cond)
    assert counter.forwards == 2 and counter.backwards == 1
    fraction = counter.by_purpose["stdg-reference"]
    assert 0.5 < fraction < 1.0  # stopped after up_blocks.2, before the output convolution
    # forward with gradient + its backward (unmeasured: 1 x the partial forward)
    assert counter.by_purpose["stdg"] == pytest.approx(2 * fraction)


def test_zero_coefficients_cost_nothing():
    _, schedule, cond, _, pivots, z_t = setup()
    counter = PassCounter()
    stdg = _stdg(counter, eta_f=0.0, eta_b=0.0, zeta_f=0.0, zeta_b=0.0)
    guidance, loss = stdg.guidance(z_t, pivots[STEPS - 1], schedule.timesteps[1], cond)
    assert not stdg.active and loss == 0.0 and not guidance.any()
    assert counter.forwards == 0 and counter.backwards == 0


def test_motion_only_guidance_records_no_keys_and_stops_earlier():
    stdg = _stdg(zeta_f=0.0, zeta_b=0.0)
    assert stdg.uses_temporal and not stdg.uses_keys
    assert all(".motion_modules." in name for name in stdg.stop_modules)


def test_at_the_pivot_the_guidance_is_zero_without_any_pass():
    _, schedule, cond, _, pivots, _ = setup()
    counter = PassCounter()
    t = schedule.timesteps[0]
    guidance, loss = _stdg(counter).guidance(pivots[STEPS], pivots[STEPS], t, cond)
    assert loss == 0.0 and not guidance.any() and counter.forwards == 0


def test_without_a_mask_the_background_terms_vanish_and_background_target_swaps():
    config = STDGSettings()
    assert coefficients(config, True) == {"eta_f": 0.5, "eta_b": 0.5, "zeta_f": 0.0, "zeta_b": 0.5}
    assert coefficients(config, False) == {"eta_f": 0.5, "eta_b": 0.0, "zeta_f": 0.0, "zeta_b": 0.0}
    background = STDGSettings(target="background", eta_b=0.8)
    assert coefficients(background, True) == {
        "eta_f": 0.8,
        "eta_b": 0.5,
        "zeta_f": 0.5,
        "zeta_b": 0.0,
    }


def test_masks_follow_each_layer_by_area():
    assert layer_size((8, 8), 16) == (4, 4)
    assert layer_size((9, 7), 20) == (5, 4)
    stdg = _stdg()
    fg, bg = stdg._masks_at(16, 4)  # 4x4 level of a 16x16 frame
    assert fg.shape == (4, 16) and torch.equal(bg, ~fg)
    area = torch.nn.functional.avg_pool2d(torch.from_numpy(ball_masks()).float()[:, None], 4)
    assert torch.equal(fg, (area >= 0.5).reshape(4, 16))
