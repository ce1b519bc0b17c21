"""Memory options: each leaves the results unchanged (within 1e-5), each really does what it
says (checkpointing stores fewer activations; offload keeps weights off the execution device
while other components run), and the plan names and the auto choice behave."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _helpers_invert import PROMPT, ball_masks

from videodirector_cli.diffusion import memory, offload
from videodirector_cli.diffusion.latents import decode_latents, encode_frames
from videodirector_cli.diffusion.prompts import encode_prompt
from videodirector_cli.diffusion.stdg import STDG
from videodirector_cli.diffusion.tiny import build_tiny_model
from videodirector_cli.diffusion.unet_call import predict_noise
from videodirector_cli.errors import UsageError
from videodirector_cli.settings.invert import STDGSettings

FRAMES, LATENT = 4, (8, 8)


@pytest.fixture(scope="module")
def model():
    return build_tiny_model(seed=3)


def _inputs():
    g = torch.Generator().manual_seed(0)
    latent = torch.randn(1, 4, FRAMES, *LATENT, generator=g)
    pivot = latent + 0.3 * torch.randn(1, 4, FRAMES, *LATENT, generator=g)
    null = torch.randn(FRAMES, 77, 32, generator=g)
    return latent, pivot, null


def null_text_gradient(model) -> torch.Tensor:
    latent, _, start = _inputs()
    null = start.clone().requires_grad_(True)
    eps = predict_noise(model.unet, latent, 700, null)
    (eps**2).mean().backward()
    assert null.grad is not None
    return null.grad.clone()


def stdg_gradient(model) -> tuple[torch.Tensor, float]:
    latent, pivot, _ = _inputs()
    stdg = STDG(model.unet, STDGSettings(), torch.from_numpy(ball_masks()), LATENT)
    cond = encode_prompt(model, PROMPT)
    return stdg.guidance(latent, pivot, 700, cond)


def frames_clip() -> np.ndarray:
    rng = np.random.default_rng(5)
    return rng.integers(0, 256, (FRAMES, 16, 16, 3), dtype=np.uint8)


def with_saved_bytes(run):
    """(run(), bytes autograd stored for the backward while ``run`` built its graph)."""
    total = 0

    def pack(tensor):
        nonlocal total
        total += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        result = run()
    return result, total


# ------------------------------------------------------------------------- checkpointing


def test_checkpointing_leaves_the_null_text_gradient_unchanged_and_stores_less(model):
    plain, without = with_saved_bytes(lambda: null_text_gradient(model))
    with offload.gradient_checkpointing(model.unet):
        assert model.unet.is_gradient_checkpointing
        checkpointed, with_it = with_saved_bytes(lambda: null_text_gradient(model))
    assert not model.unet.is_gradient_checkpointing
    torch.testing.assert_close(checkpointed, plain, rtol=0, atol=1e-5)
    # only the input (the null) requires a gradient and the weights are frozen: still applies
    print(f"saved for the backward: {without / 1e6:.1f} MB plain, {with_it / 1e6:.1f} MB")
    assert with_it < 0.8 * without


def test_checkpointing_leaves_the_stdg_gradient_unchanged(model):
    """STDG's forward stops inside a checkpointed block; the backward recomputes it."""
    plain, plain_loss = stdg_gradient(model)
    assert plain_loss > 0 and bool(plain.abs().sum() > 0)
    with offload.gradient_checkpointing(model.unet):
        checkpointed, loss = stdg_gradient(model)
    assert loss == pytest.approx(plain_loss, rel=1e-6)
    torch.testing.assert_close(checkpointed, plain, rtol=0, atol=1e-5)


# ------------------------------------------------------------------------- VAE slices


def test_vae_slices_leave_encode_and_decode_unchanged(model):
    frames = frames_clip()
    latents = encode_frames(model, frames)
    decoded = decode_latents(model, latents)
    with offload.vae_slices(model, 1):
        assert model.vae_frames == 1
        sliced_latents = encode_frames(model, frames)
        sliced = decode_latents(model, latents)
    assert model.vae_frames == 4
    torch.testing.assert_close(sliced_latents, latents, rtol=0, atol=1e-5)
    assert np.array_equal(sliced, decoded)


# ------------------------------------------------------------------------- whole plans


@pytest.mark.parametrize("name", ["low", "lowest"])
def test_each_plan_leaves_gradients_and_decodes_unchanged(model, name):
    """On the CPU offloading moves nothing, but every hook runs (and the STDG forward's stop
    exception passes through the sequential hooks)."""
    nt, (sg, loss), frames = null_text_gradient(model), stdg_gradient(model), frames_clip()
    decoded = decode_latents(model, encode_frames(model, frames))
    with memory.use_plan(model, memory.PLANS[name]):
        nt_plan, (sg_plan, loss_plan) = null_text_gradient(model), stdg_gradient(model)
        decoded_plan = decode_latents(model, encode_frames(model, frames))
    torch.testing.assert_close(nt_plan, nt, rtol=0, atol=1e-5)
    torch.testing.assert_close(sg_plan, sg, rtol=0, atol=1e-5)
    assert loss_plan == pytest.approx(loss, rel=1e-6)
    assert np.array_equal(decoded_plan, decoded)
    assert not model.unet.is_gradient_checkpointing and model.vae_frames == 4


# ------------------------------------------------------------------------- offload mechanics


def _devices(module) -> set[str]:
    return {t.device.type for t in (*module.parameters(), *module.buffers())}


def _snapshot(module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_model_offload_keeps_text_encoder_and_vae_off_the_device_while_the_unet_runs(model):
    """The meta device stands in for the accelerator: whatever is loaded there shows up as
    meta tensors; the UNet stays where it is (on the CPU here) and runs for real."""
    before = {"te": _snapshot(model.text_encoder), "vae": _snapshot(model.vae)}
    seen: dict[str, tuple[set[str], set[str]]] = {}

    def probe(name):
        def hook(module, args):
            seen[name] = (_devices(model.text_encoder), _devices(model.vae))

        return hook

    handles = [model.unet.register_forward_hook(lambda m, a, o: probe("unet")(m, a))]
    handles.append(model.text_encoder.register_forward_hook(lambda m, a, o: probe("te")(m, a)))
    handles.append(model.vae.decoder.register_forward_hook(lambda m, a, o: probe("vae")(m, a)))
    try:
        with offload.model_offload(model, "cpu", execution_device="meta") as state:
            model.text_encoder(torch.zeros((1, 77), dtype=torch.long, device="meta"))
            assert state.placement() == {"text_encoder": "device", "vae": "offloaded"}
            predict_noise(model.unet, torch.zeros(1, 4, 2, 8, 8), 500, torch.zeros(1, 77, 32))
            assert state.placement() == {"text_encoder": "offloaded", "vae": "offloaded"}
            model.vae.decode(torch.zeros((1, 4, 8, 8), device="meta"))
            assert state.log == ["text_encoder", "unet", "vae"]
    finally:
        for handle in handles:
            handle.remove()
    assert seen["te"] == ({"meta"}, {"cpu"})  # the text encoder on the device, VAE parked
    assert seen["unet"] == ({"cpu"}, {"cpu"})  # both parked while the UNet runs
    assert seen["vae"] == ({"cpu"}, {"meta"})
    assert _devices(model.text_encoder) == _devices(model.vae) == {"cpu"}
    for name, module in (("te", model.text_encoder), ("vae", model.vae)):
        after = module.state_dict()
        assert all(torch.equal(after[k], v) for k, v in before[name].items())


def test_sequential_offload_loads_each_layer_only_for_its_own_forward(model):
    before = _snapshot(model.unet)
    layers_on_device: list[int] = []

    def count(module, args, output):
        layers_on_device.append(sum(1 for p in model.unet.parameters() if p.device.type == "meta"))

    probes = [m.register_forward_hook(count) for m in model.unet.modules() if m._parameters]
    try:
        with offload.sequential_offload(model.unet, "meta", "cpu") as state:
            sample = torch.zeros((1, 4, 2, 8, 8), device="meta")
            context = torch.zeros((2, 77, 32), device="meta")
            model.unet(sample, 500, encoder_hidden_states=context)
            assert _devices(model.unet) == {"cpu"}  # all back after the forward
    finally:
        for probe in probes:
            probe.remove()
    hooked = len(state.parts)
    assert state.loads >= hooked  # every layer with weights came to the device
    # the probes were registered first, so they run before each layer's unloading hook:
    # then that layer's weight and bias are the only parameters on the device
    assert layers_on_device and max(layers_on_device) <= 2
    after = model.unet.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())


# ------------------------------------------------------------------------- plans and auto


def test_plan_names_order_and_bad_input():
    assert memory.plan_named("LOW") is memory.PLANS["low"]
    assert memory.PLANS["fast"] == memory.MemoryPlan("fast")
    low, lowest = memory.PLANS["low"], memory.PLANS["lowest"]
    assert low.checkpointing and low.offload == "model" and low.vae_frames == 1
    assert lowest.checkpointing and lowest.offload == "sequential"
    assert memory.next_plan(memory.PLANS["fast"]) is low
    assert memory.next_plan(lowest) is None
    with pytest.raises(UsageError, match="--memory 'tiny'"):
        memory.plan_named("tiny")


def test_auto_takes_the_fastest_plan_that_fits():
    gib = 2**30
    peaks = {"fast": 22 * gib, "low": 13 * gib, "lowest": 11 * gib}
    assert memory.choose(peaks, 80 * gib).plan.name == "fast"
    assert memory.choose(peaks, 24 * gib).plan.name == "low"  # 22 > 0.9 x 24
    assert memory.choose(peaks, 12.5 * gib).plan.name == "lowest"
    short = memory.choose(peaks, 8 * gib)
    assert short.plan.name == "lowest" and "nothing fits" in short.reason
    cpu = memory.choose(peaks, None)
    assert cpu.plan.name == "fast" and "CPU" in cpu.reason
    assert memory.free_memory(torch.device("cpu")) is None
