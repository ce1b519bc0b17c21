"""The shared building blocks: DDIM schedule, pass counter, layer naming, processor swap."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMScheduler
from diffusers.models.attention_processor import AttnProcessor

from videodirector_cli.diffusion.attention.layers import classify, layers_of
from videodirector_cli.diffusion.attention.swap import swapped_processors
from videodirector_cli.diffusion.passes import CostModel, PassCounter
from videodirector_cli.diffusion.schedule import Schedule, make_ddim_scheduler


def animatediff_scheduler() -> DDIMScheduler:
    return make_ddim_scheduler()


@pytest.fixture
def tiny(tiny_model):
    """The session's tiny model (conftest.py)."""
    return tiny_model


def test_schedule_matches_diffusers_ddim_step() -> None:
    scheduler = animatediff_scheduler()
    schedule = Schedule.from_scheduler(scheduler, 50)
    assert schedule.timesteps[0] == 981 and schedule.timesteps[-1] == 1
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 4, 2, 8, 8, generator=generator)
    eps = torch.randn(latents.shape, generator=generator)
    scheduler.set_timesteps(50)
    for index in (0, 17, 49):
        expected = scheduler.step(eps, schedule.timesteps[index], latents).prev_sample
        assert torch.allclose(schedule.denoise_step(latents, eps, index), expected, atol=1e-6)


def test_invert_step_undoes_denoise_step_for_fixed_eps() -> None:
    schedule = Schedule.from_scheduler(animatediff_scheduler(), 20)
    generator = torch.Generator().manual_seed(1)
    latents = torch.randn(1, 4, 2, 8, 8, generator=generator, dtype=torch.float64)
    eps = torch.randn(latents.shape, generator=generator, dtype=torch.float64)
    for index in range(schedule.steps):
        there = schedule.denoise_step(latents, eps, index)
        back = schedule.invert_step(there, eps, index)
        assert torch.allclose(back, latents, atol=1e-10)


def test_pass_counter_charges_backwards_by_the_cost_model() -> None:
    """Unmeasured, a backward costs 1 x the forward it reverses (rounded, documented); with a
    cost model, the measured cost of that purpose, whatever fraction the call passes."""
    counter = PassCounter()
    counter.add_forward(rows=3, purpose="edit")
    counter.add_forward(rows=1, fraction=0.5, purpose="stdg")
    counter.add_backward(rows=1, fraction=0.5, purpose="stdg")
    assert counter.forwards == 2 and counter.backwards == 1
    assert counter.forward_equivalents == pytest.approx(3 + 0.5 + 0.5)
    assert counter.as_dict()["by_purpose"] == {"edit": 3.0, "stdg": 1.0}
    measured = PassCounter(costs=CostModel(backward={"stdg": 0.8, "null-text": 1.1}))
    measured.add_backward(rows=1, fraction=0.5, purpose="stdg")
    measured.add_backward(rows=2, purpose="null-text")
    measured.add_backward(rows=1, fraction=0.25, purpose="other")
    assert measured.by_purpose == pytest.approx({"stdg": 0.8, "null-text": 2.2, "other": 0.25})


def test_layers_are_classified_by_module_name(tiny) -> None:
    temporal = layers_of(tiny.unet, "temporal")
    # both attn1 and attn2 of a motion module are temporal self-attention
    assert all(".motion_modules." in layer.name for layer in temporal)
    assert {layer.name.rsplit(".", 2)[-2] for layer in temporal} == {"attn1", "attn2"}
    spatial = layers_of(tiny.unet, "spatial_self")
    assert [layer.order for layer in spatial] == list(range(len(spatial)))
    blocks = [layer.block for layer in spatial]
    # call order: down blocks before the mid block before the up blocks
    assert blocks.index("mid_block") > blocks.index("down_blocks.1")
    assert blocks.index("up_blocks.1") > blocks.index("mid_block")
    assert len(layers_of(tiny.unet, "temporal", blocks=("up_blocks.1", "up_blocks.2"))) == 8
    with pytest.raises(ValueError):
        classify("conv_in.weight")


def test_swapped_processors_restores_originals_even_on_error(tiny) -> None:
    before = {name: type(proc) for name, proc in tiny.unet.attn_processors.items()}
    target = layers_of(tiny.unet, "spatial_self")[0].name
    with pytest.raises(RuntimeError), swapped_processors(tiny.unet, {target: AttnProcessor()}):
        assert isinstance(tiny.unet.attn_processors[target], AttnProcessor)
        raise RuntimeError("boom")
    after = {name: type(proc) for name, proc in tiny.unet.attn_processors.items()}
    assert after == before
    with (
        pytest.raises(KeyError),
        swapped_processors(tiny.unet, {"nope.processor": AttnProcessor()}),
    ):
        pass
