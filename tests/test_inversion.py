"""DDIM inversion, the guided-eps formula, capture processors, early-stopped UNet calls, files."""

from __future__ import annotations

import pytest
import torch
from _helpers_invert import tiny_model

from videodirector_cli.diffusion.attention.capture import FeatureRecorder, capture_processors
from videodirector_cli.diffusion.attention.swap import swapped_processors
from videodirector_cli.diffusion.cfg import apply_guidance, classifier_free
from videodirector_cli.diffusion.inversion import ddim_invert, denoise, invert, sample_cfg
from videodirector_cli.diffusion.passes import PassCounter
from videodirector_cli.diffusion.schedule import Schedule
from videodirector_cli.diffusion.trajectory import TrajectoryStep
from videodirector_cli.diffusion.unet_call import (
    batch_embeddings,
    frame_embeddings,
    predict_noise,
    run_until,
)
from videodirector_cli.stages.inversion_files import InversionFiles

SHAPE = (1, 4, 4, 8, 8)


def _schedule(steps: int) -> Schedule:
    return Schedule.from_scheduler(tiny_model().scheduler, steps)


class AffineUNet(torch.nn.Module):
    """A stand-in UNet whose eps = a * z + b(t): exactly linear in the latent."""

    def __init__(self, a: float) -> None:
        super().__init__()
        self.a = a
        self.b = torch.nn.Parameter(torch.randn(SHAPE, generator=torch.Generator().manual_seed(3)))

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    def forward(self, sample, timestep, encoder_hidden_states):
        out = self.a * sample + self.b * (1.0 + float(timestep) / 1000.0)
        return type("Out", (), {"sample": out})()


def test_inversion_then_sampling_returns_the_input_for_a_latent_independent_noise_model():
    schedule = _schedule(10)
    unet = AffineUNet(a=0.0)
    clean = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))
    cond = torch.zeros(1, 77, 8)
    pivots = ddim_invert(unet, schedule, clean, cond)
    assert pivots.shape == (11, *SHAPE)
    assert torch.equal(pivots[0], clean)
    back = sample_cfg(unet, schedule, pivots[-1], cond, cond, scale=1.0)
    assert torch.allclose(back, clean, atol=1e-5)
    assert not torch.allclose(pivots[-1], clean, atol=0.1)  # it really went somewhere


def test_inversion_error_of_an_affine_noise_model_grows_linearly_with_its_slope():
    """Explicit DDIM inversion evaluates eps at z_{t_prev}, sampling at z_t: for eps = a z + b
    the round trip is off by O(a) (the mismatch null-text optimisation corrects); a = 0 is exact
    (previous test)."""
    schedule = _schedule(10)
    clean = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))

    def error(a: float) -> float:
        unet = AffineUNet(a)

        def noise(latent, t):
            return unet(latent, t, None).sample

        pivots = invert(noise, schedule, clean)
        back = denoise(lambda z, t, i: noise(z, t), schedule, pivots[-1])
        return float((back - clean).abs().max())

    small, large = error(0.01), error(0.02)
    assert small > 1e-4
    assert 1.7 < large / small < 2.4


def test_guided_eps_formula():
    eps_u, eps_c = torch.tensor([1.0, 2.0]), torch.tensor([3.0, 2.0])
    assert torch.equal(classifier_free(eps_u, eps_c, 7.5), torch.tensor([16.0, 2.0]))
    guidance = torch.tensor([1.0, -2.0])
    assert torch.equal(apply_guidance(eps_c, guidance, 0.5), torch.tensor([3.5, 1.0]))
    assert apply_guidance(eps_c, None, 0.5) is eps_c


def test_embeddings_per_frame_and_per_batch():
    shared, per_frame = torch.randn(1, 77, 32), torch.randn(4, 77, 32)
    assert frame_embeddings(shared, 4).shape == (4, 77, 32)
    assert frame_embeddings(per_frame, 4) is per_frame
    both = batch_embeddings([shared, per_frame], 4)
    assert both.shape == (8, 77, 32)
    assert torch.equal(both[4:], per_frame) and torch.equal(both[1], shared[0])


def test_capture_processors_compute_the_default_attention_output():
    model = tiny_model()
    latent = torch.randn(SHAPE, generator=torch.Generator().manual_seed(2))
    cond = torch.randn(4, 77, 32, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        plain = predict_noise(model.unet, latent, 500, cond)
        recorder = FeatureRecorder()
        blocks = ("up_blocks.1", "up_blocks.2")
        with swapped_processors(model.unet, capture_processors(model.unet, recorder, blocks)):
            captured = predict_noise(model.unet, latent, 500, cond)
    assert torch.allclose(plain, captured, atol=1e-5)
    assert len(recorder.temporal) == 8  # 2 blocks x 2 motion modules x (attn1, attn2)
    assert len(recorder.keys) == 4
    probs = next(iter(recorder.temporal.values()))
    assert probs.shape[-2:] == (4, 4)  # frames x frames
    assert torch.allclose(probs.sum(-1), torch.ones(()), atol=1e-5)


def test_predict_noise_stops_after_the_modules_asked_for_and_counts_the_fraction():
    model = tiny_model()
    latent = torch.randn(SHAPE)
    cond = torch.randn(1, 77, 32)
    ran = []
    handle = model.unet.get_submodule("up_blocks.2").register_forward_hook(
        lambda *args: ran.append(1)
    )
    counter = PassCounter()
    try:
        with torch.no_grad():
            fraction = run_until(model.unet, latent, 500, cond, ["up_blocks.1"], counter=counter)
            assert not ran
            full = predict_noise(model.unet, latent, 500, cond, counter=counter)
    finally:
        handle.remove()
    assert full is not None and ran
    assert counter.by_purpose["forward"] == pytest.approx(1.0 + fraction)
    assert 0.2 < fraction < 0.9  # measured FLOP share of the UNet up to up_blocks.1
    assert not model.unet.get_submodule("up_blocks.1")._forward_hooks  # hooks removed


def test_inversion_files_round_trip_and_resume_point(tmp_path):
    files = InversionFiles(tmp_path / "inv")
    pivots = torch.randn(4, *SHAPE)
    files.save_pivots("key", pivots, [701, 401, 101])
    for step in range(2):
        files.save_step(
            "key",
            TrajectoryStep(
                step,
                [701, 401, 101][step],
                torch.randn(4, 77, 32),
                torch.randn(SHAPE),
                torch.randn(SHAPE),
                torch.randn(SHAPE),
                loss=0.5,
                iterations=3,
            ),
        )
    (files.steps_dir / ".tmp-abc.safetensors").write_bytes(b"half a file")
    assert files.completed_steps("key") == 2
    assert files.completed_steps("other") == 0
    step = files.load_step(1)
    assert step.iterations == 3 and step.loss == 0.5 and step.guidance is not None
    loaded, timesteps, key = files.load_pivots()
    assert torch.equal(loaded, pivots) and timesteps == [701, 401, 101] and key == "key"
    files.remove_steps_from(1)
    assert files.completed_steps() == 1
    assert not list(files.steps_dir.glob(".tmp-*"))
