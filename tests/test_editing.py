"""The dual-path editing loop on the tiny model (16x16 latents, 3 steps; 8 frames for the
identity test, 4 elsewhere to keep the suite fast).

With 3 steps and the default tau_s 0.4 / tau_c 0.8: step 0 runs SA-I, steps 1-2 SA-II, steps
0-1 cross-attention control, so every control runs in every test below.
"""

from __future__ import annotations

import pytest
import torch
from _helpers_editing import CFG, SOURCE, box_masks, make_stored_inversion, tiny_model

from videodirector_cli.diffusion.editing import EditPlan, blend_mask, plan_edit, run_edit_path
from videodirector_cli.diffusion.passes import PassCounter
from videodirector_cli.errors import StaleError, UsageError
from videodirector_cli.settings.edit import EditSettings

STEPS = 3
TARGET = "a white tiger walking on rocks"


@pytest.fixture(scope="module")
def stored():
    return make_stored_inversion(tiny_model(), steps=STEPS, frames=4)


def edit(stored, prompt: str, masks=None, counter=None, **settings):
    """run_edit_path with a plan made for ``prompt`` from ``settings`` (the defaults otherwise)."""
    return run_edit_path(tiny_model(), stored, plan(prompt, **settings), masks, counter)


def plan(prompt: str, **settings) -> EditPlan:
    return plan_edit(tiny_model(), SOURCE, prompt, EditSettings(**settings), CFG)


def test_editing_with_the_source_prompt_reproduces_the_reconstruction():
    """No mask: SA-I, SA-II and cross-attention are identities on identical rows."""
    stored = make_stored_inversion(tiny_model(), steps=STEPS, frames=8)
    unet = tiny_model().unet
    calls = []
    handle = unet.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape[0]))
    counter = PassCounter()
    try:
        run = edit(stored, SOURCE, counter=counter)
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
    run = edit(stored, SOURCE)
    assert (run.latents - stored.next_latents[-1]).abs().max() <= 1e-4


def test_an_edit_prompt_changes_the_result(stored):
    run = edit(stored, TARGET)
    assert (run.latents - stored.next_latents[-1]).abs().max() > 1e-2


def test_ablations_turn_controls_off(stored):
    run = edit(stored, TARGET, sa1=False, sa2=False, cross=False)
    assert run.applied == {}
    run = edit(stored, TARGET, sa2_layers="none")
    assert "sa2" not in run.applied and run.applied["sa1"] > 0


def test_blend_keeps_the_reconstruction_outside_the_mask(stored):
    masks = box_masks(frames=4)
    run = edit(stored, TARGET, masks, blend=True, blend_dilate=2)  # 2 px: 1 latent cell
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
        edit(stored, TARGET, blend=True)


def test_bad_reweight_word_and_word_swap_count_fail_in_the_plan():
    """The plan (no UNet call) refuses what the tokenizer cannot map."""
    with pytest.raises(UsageError, match="lion"):
        plan(TARGET, reweight={"lion": 2})
    with pytest.raises(UsageError, match="6 words"):
        plan("a tiger walking on rocks", mode="replace")
    assert plan(TARGET, reweight={"tiger": 2}).reweight is not None


def test_another_timestep_grid_is_refused(stored):
    import dataclasses

    shifted = dataclasses.replace(stored, timesteps=[t - 1 for t in stored.timesteps])
    with pytest.raises(StaleError, match="timestep grid"):
        edit(shifted, SOURCE)


def test_identity_against_the_null_text_optimiser():
    """The same identity on an inversion made by the real DDIM inversion + null-text code."""
    from videodirector_cli.diffusion.inversion import ddim_invert
    from videodirector_cli.diffusion.null_text import initial_null, optimise_nulls
    from videodirector_cli.diffusion.prompts import encode_prompt
    from videodirector_cli.diffusion.schedule import Schedule
    from videodirector_cli.diffusion.trajectory import StoredInversion
    from videodirector_cli.settings.invert import InvertSettings, NullTextSettings

    model = tiny_model()
    schedule = Schedule.from_scheduler(model.scheduler, STEPS)
    cond = encode_prompt(model, SOURCE).float()
    clean = torch.randn(1, 4, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    pivots = ddim_invert(model.unet, schedule, clean, cond)
    null = initial_null(encode_prompt(model, "").float(), 4, "per-frame")
    scale = InvertSettings().guidance_scale
    steps = optimise_nulls(
        model.unet, schedule, pivots, cond, NullTextSettings(inner_steps=1), scale, null=null
    )
    stored = StoredInversion.from_steps("x", list(schedule.timesteps), pivots, steps)
    assert scale == CFG
    run = edit(stored, SOURCE)
    assert (run.latents - stored.next_latents[-1]).abs().max() <= 1e-4
