"""The dual-path editing loop on the tiny model (16x16 latents, 3 steps; 8 frames for the
identity test, 4 elsewhere to keep the suite fast).

With 3 steps and the default tau_s 0.4 / tau_c 0.8: step 0 runs SA-I, steps 1-2 SA-II, steps
0-1 cross-attention control, so every control runs in every test below.
"""

from __future__ import annotations

import pytest
import torch
from _helpers_editing import CFG, SOURCE, box_masks, make_stored_inversion, tiny_model

from videodirector_cli.diffusion.attention.controller import ControlSettings
from videodirector_cli.diffusion.editing import EditSettings, blend_mask, run_edit_path
from videodirector_cli.diffusion.passes import PassCounter
from videodirector_cli.errors import StaleError, UsageError

STEPS = 3
TARGET = "a white tiger walking on rocks"


@pytest.fixture(scope="module")
def stored():
    return make_stored_inversion(tiny_model(), steps=STEPS, frames=4)


def settings(**kwargs) -> EditSettings:
    control = {k: kwargs.pop(k) for k in list(kwargs) if hasattr(ControlSettings, k)}
    return EditSettings(control=ControlSettings(**control), guidance_scale=CFG, **kwargs)


def test_editing_with_the_source_prompt_reproduces_the_reconstruction():
    """No mask: SA-I, SA-II and cross-attention are identities on identical rows."""
    stored = make_stored_inversion(tiny_model(), steps=STEPS, frames=8)
    unet = tiny_model().unet
    calls = []
    handle = unet.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape[0]))
    counter = PassCounter()
    try:
        run = run_edit_path(tiny_model(), stored, SOURCE, settings(), counter=counter)
    finally:
        handle.remove()
    assert (run.latents - stored.next_latents[-1]).abs().max() <= 1e-4
    assert run.applied["sa1"] > 0 and run.applied["sa2"] > 0 and run.applied["cross"] > 0
    # one batched UNet call of 4 rows per step, nothing else
    assert calls == [4] * STEPS
    assert counter.forwards == STEPS
    assert counter.forward_equivalents == 4 * STEPS


def test_identity_with_one_shared_null_and_no_guidance():
    """The shared-null variant (one (1, L, D) null for all frames) and an inversion without STDG."""
    stored = make_stored_inversion(
        tiny_model(), steps=STEPS, frames=4, shared_null=True, guidance=False
    )
    assert stored.nulls[0].shape[0] == 1 and stored.guidance[0] is None
    run = run_edit_path(tiny_model(), stored, SOURCE, settings())
    assert (run.latents - stored.next_latents[-1]).abs().max() <= 1e-4


def test_an_edit_prompt_changes_the_result(stored):
    run = run_edit_path(tiny_model(), stored, TARGET, settings())
    assert (run.latents - stored.next_latents[-1]).abs().max() > 1e-2


def test_ablations_turn_controls_off(stored):
    run = run_edit_path(tiny_model(), stored, TARGET, settings(sa1=False, sa2=False, cross=False))
    assert run.applied == {}
    run = run_edit_path(tiny_model(), stored, TARGET, settings(sa2_layers="none"))
    assert "sa2" not in run.applied and run.applied["sa1"] > 0


def test_blend_keeps_the_reconstruction_outside_the_mask(stored):
    masks = box_masks(frames=4)
    run = run_edit_path(
        tiny_model(), stored, TARGET, settings(blend=True, blend_dilate=1), masks=masks
    )
    keep = blend_mask(masks, (16, 16), dilate=1).bool().expand_as(run.latents)
    reconstruction = stored.next_latents[-1]
    assert torch.equal(run.latents[~keep], reconstruction[~keep])
    assert (run.latents[keep] - reconstruction[keep]).abs().max() > 1e-3


def test_blend_mask_dilates_in_latent_cells():
    masks = torch.zeros(1, 32, 32, dtype=torch.bool)
    masks[0, 10, 10] = True  # one pixel: latent cell (5, 5) at factor 2
    cells = blend_mask(masks, (16, 16), dilate=0)[0, 0, 0]
    assert cells.sum() == 1 and cells[5, 5] == 1
    grown = blend_mask(masks, (16, 16), dilate=1)[0, 0, 0]
    assert grown.sum() == 9 and grown[4:7, 4:7].all()


def test_blend_without_mask_is_refused(stored):
    with pytest.raises(UsageError, match="mask"):
        run_edit_path(tiny_model(), stored, TARGET, settings(blend=True))


def test_bad_reweight_word_and_word_swap_count_fail_before_any_unet_call(stored):
    counter = PassCounter()
    with pytest.raises(UsageError, match="lion"):
        run_edit_path(tiny_model(), stored, TARGET, settings(reweight={"lion": 2}), counter=counter)
    with pytest.raises(UsageError, match="6 words"):
        run_edit_path(
            tiny_model(),
            stored,
            "a tiger walking on rocks",
            settings(mode="replace"),
            counter=counter,
        )
    assert counter.forwards == 0


def test_another_timestep_grid_is_refused(stored):
    import dataclasses

    shifted = dataclasses.replace(stored, timesteps=[t - 1 for t in stored.timesteps])
    with pytest.raises(StaleError, match="timestep grid"):
        run_edit_path(tiny_model(), shifted, SOURCE, settings())


def test_identity_against_the_null_text_optimiser():
    """The same identity on an inversion made by the real DDIM inversion + null-text code."""
    from videodirector_cli.diffusion.inversion import ddim_invert
    from videodirector_cli.diffusion.null_text import NullTextConfig, initial_null, optimise_nulls
    from videodirector_cli.diffusion.prompts import encode_prompt
    from videodirector_cli.diffusion.schedule import Schedule
    from videodirector_cli.stages.inversion_files import StoredInversion

    model = tiny_model()
    schedule = Schedule.from_scheduler(model.scheduler, STEPS)
    cond = encode_prompt(model, SOURCE).float()
    clean = torch.randn(1, 4, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    pivots = ddim_invert(model.unet, schedule, clean, cond)
    config = NullTextConfig(inner_steps=1)
    null = initial_null(encode_prompt(model, "").float(), 4, "per-frame")
    steps = optimise_nulls(model.unet, schedule, pivots, cond, config, null=null)
    stored = StoredInversion(
        key="x",
        timesteps=list(schedule.timesteps),
        pivots=pivots,
        nulls=[s.null for s in steps],
        latents=[s.latent for s in steps],
        guidance=[s.guidance for s in steps],
        params={"prompt": SOURCE},
        next_latents=[s.next_latent for s in steps],
    )
    assert config.guidance_scale == CFG
    run = run_edit_path(model, stored, SOURCE, settings())
    assert (run.latents - stored.next_latents[-1]).abs().max() <= 1e-4
