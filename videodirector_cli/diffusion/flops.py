"""FLOPs of vdir's UNet passes, counted on the meta device: the unit behind every pass count.

``measure_costs`` builds the UNet of an ``Architecture`` on the meta device (no weights, no
memory) and counts, with ``torch.utils.flop_counter.FlopCounterMode``, for one video of F
frames at the given latent size:

- a full forward (the unit, 1 forward-equivalent);
- the backward of the null-text loss: gradient w.r.t. the encoder hidden states only (the
  weights are frozen, so no weight gradients: about one forward, not two);
- STDG's forward, stopped after the last layer its loss reads (attention processors that
  record temporal probabilities and keys, as diffusion/stdg.py runs it), and its backward
  w.r.t. the latent, which flows only through the part that ran.

Attention runs the memory-efficient kernel CUDA uses (projection.sdpa on meta): its backward
recomputes the attention map, and that recomputation is counted. With ``checkpointing`` the
backward also counts the forward recomputed by activation checkpointing (memory.py), which is
what that option costs. Results are cached per process and, for the shapes vdir ships, in
``configs/costs.json`` (see ``cached_costs``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from videodirector_cli.diffusion.architecture import Architecture
from videodirector_cli.diffusion.passes import CostModel

if TYPE_CHECKING:
    import torch

COSTS_FILE = Path(__file__).resolve().parent / "configs" / "costs.json"
"""Measured costs of the real SD1.5 + AnimateDiff v3 shape (``python -m
videodirector_cli.diffusion.flops`` rewrites it; a slow test checks it)."""

STDG_DEFAULT_BLOCKS = ("up_blocks.1", "up_blocks.2")


@dataclass(frozen=True)
class StdgPasses:
    """What STDG's passes read: its blocks, and which features (see STDG.stop_modules)."""

    blocks: tuple[str, ...] = STDG_DEFAULT_BLOCKS
    temporal: bool = True
    keys: bool = True

    @classmethod
    def of(cls, stdg: Any) -> StdgPasses:
        """From a diffusion.stdg.STDG object."""
        return cls(tuple(stdg.settings.blocks), bool(stdg.uses_temporal), bool(stdg.uses_keys))

    @classmethod
    def from_config(cls, config: Any, has_mask: bool) -> StdgPasses | None:
        """From STDG's settings, before any model exists (``--plan``); None when every
        coefficient is zero (STDG then runs no pass)."""
        from videodirector_cli.diffusion.stdg import coefficients

        coef = coefficients(config, has_mask)
        temporal = coef["eta_f"] != 0 or coef["eta_b"] != 0
        keys = coef["zeta_f"] != 0 or coef["zeta_b"] != 0
        return cls(tuple(config.blocks), temporal, keys) if temporal or keys else None


@dataclass(frozen=True)
class UNetCosts:
    """FLOPs of one row's passes, and the same as forward-equivalents."""

    architecture: str
    fingerprint: str
    frames: int
    latent_hw: tuple[int, int]
    checkpointing: bool
    forward_flop: float
    null_text_backward_flop: float
    stdg_forward_flop: float | None
    stdg_backward_flop: float | None

    @property
    def null_text_backward(self) -> float:
        return self.null_text_backward_flop / self.forward_flop

    @property
    def stdg_forward(self) -> float | None:
        if self.stdg_forward_flop is None:
            return None
        return self.stdg_forward_flop / self.forward_flop

    @property
    def stdg_backward(self) -> float | None:
        if self.stdg_backward_flop is None:
            return None
        return self.stdg_backward_flop / self.forward_flop

    def cost_model(self) -> CostModel:
        """The PassCounter's cost model: backward costs by purpose, in forward-equivalents."""
        backward = {"null-text": self.null_text_backward}
        if self.stdg_backward is not None:
            backward["stdg"] = self.stdg_backward
        source = (
            f"measured: {self.architecture} ({self.fingerprint}), {self.frames} frames, "
            f"{self.latent_hw[0]}x{self.latent_hw[1]} latents"
            + (", activation checkpointing" if self.checkpointing else "")
        )
        return CostModel(backward=backward, source=source, forward_flop=self.forward_flop)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["latent_hw"] = list(self.latent_hw)
        data["ratios"] = {
            "null_text_backward": self.null_text_backward,
            "stdg_forward": self.stdg_forward,
            "stdg_backward": self.stdg_backward,
        }
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UNetCosts:
        fields = {k: v for k, v in data.items() if k != "ratios"}
        fields["latent_hw"] = tuple(fields["latent_hw"])
        return cls(**fields)


def _key(
    arch: Architecture,
    frames: int,
    latent_hw: tuple[int, int],
    stdg: StdgPasses | None,
    checkpointing: bool,
) -> str:
    parts = [arch.unet_fingerprint(), arch.max_tokens, frames, list(latent_hw)]
    parts += [None if stdg is None else asdict(stdg), checkpointing]
    return json.dumps(parts, default=list)


_CACHE: dict[str, UNetCosts] = {}


def measure_costs(
    arch: Architecture,
    frames: int,
    latent_hw: tuple[int, int],
    stdg: StdgPasses | None = StdgPasses(),
    checkpointing: bool = False,
) -> UNetCosts:
    """Count the FLOPs of one row's passes on the meta device (cached per process)."""
    key = _key(arch, frames, latent_hw, stdg, checkpointing)
    if key not in _CACHE:
        _CACHE[key] = _measure(arch, frames, latent_hw, stdg, checkpointing)
    return _CACHE[key]


def cached_costs(
    arch: Architecture,
    frames: int,
    latent_hw: tuple[int, int],
    stdg: StdgPasses | None = StdgPasses(),
    checkpointing: bool = False,
) -> UNetCosts:
    """``measure_costs``, read from ``configs/costs.json`` when the shape is stored there."""
    key = _key(arch, frames, latent_hw, stdg, checkpointing)
    if key not in _CACHE and COSTS_FILE.is_file():
        stored = json.loads(COSTS_FILE.read_text()).get("costs", {})
        if key in stored:
            _CACHE[key] = UNetCosts.from_dict(stored[key])
    return measure_costs(arch, frames, latent_hw, stdg, checkpointing)


def cost_model(
    unet: Any,
    frames: int,
    latent_hw: tuple[int, int],
    stdg: Any = None,
    checkpointing: bool = False,
) -> CostModel:
    """The cost model for a PassCounter of a run on ``unet`` (a loaded UNetMotionModel),
    with ``stdg`` the run's diffusion.stdg.STDG object (or None without STDG)."""
    arch = Architecture(
        name=str(getattr(unet.config, "_class_name", type(unet).__name__)),
        unet=_unet_config(unet),
        vae={},
        text_encoder={},
    )
    passes = StdgPasses.of(stdg) if stdg is not None and stdg.active else None
    return cached_costs(arch, frames, latent_hw, passes, checkpointing).cost_model()


def _unet_config(unet: Any) -> dict[str, Any]:
    from videodirector_cli.diffusion.architecture import _plain

    return _plain(unet.config)


# ------------------------------------------------------------------------------- measuring


def _context(arch: Architecture, frames: int, grad: bool) -> torch.Tensor:
    import torch

    dim = int(arch.unet.get("cross_attention_dim") or arch.context_dim)
    context = torch.empty((frames, arch.max_tokens, dim), device="meta", dtype=torch.float32)
    return context.requires_grad_(grad)


def _measure(
    arch: Architecture,
    frames: int,
    latent_hw: tuple[int, int],
    stdg: StdgPasses | None,
    checkpointing: bool,
) -> UNetCosts:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from videodirector_cli.diffusion.unet_call import predict_noise

    unet = arch.build_unet(torch.float32)
    if checkpointing:
        unet.enable_gradient_checkpointing()
    channels = int(arch.unet.get("in_channels", 4))
    latent = torch.empty((1, channels, frames, *latent_hw), device="meta")

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        predict_noise(unet, latent, 500, _context(arch, frames, False))
    forward = counter.get_total_flops()

    null = _context(arch, frames, True)
    counter = FlopCounterMode(display=False)
    with counter:
        eps = predict_noise(unet, latent, 500, null)
        before = counter.get_total_flops()
        eps.pow(2).mean().backward()
    null_backward = counter.get_total_flops() - before

    stdg_forward: int | None = None
    stdg_backward: int | None = None
    if stdg is not None and (stdg.temporal or stdg.keys):
        stdg_forward, stdg_backward = _measure_stdg(unet, latent, arch, frames, stdg)
    return UNetCosts(
        architecture=arch.name,
        fingerprint=arch.unet_fingerprint(),
        frames=frames,
        latent_hw=(int(latent_hw[0]), int(latent_hw[1])),
        checkpointing=checkpointing,
        forward_flop=float(forward),
        null_text_backward_flop=float(null_backward),
        stdg_forward_flop=None if stdg_forward is None else float(stdg_forward),
        stdg_backward_flop=None if stdg_backward is None else float(stdg_backward),
    )


def stdg_stop_modules(unet: Any, stdg: StdgPasses) -> list[str]:
    """The modules after which STDG's forward stops (as STDG.stop_modules names them)."""
    from videodirector_cli.diffusion.attention.layers import layers_of

    names: list[str] = []
    if stdg.temporal:
        names += [x.module_name for x in layers_of(unet, "temporal", stdg.blocks)]
    if stdg.keys:
        names += [x.module_name for x in layers_of(unet, "spatial_self", stdg.blocks)]
    return names


def stdg_surrogate_loss(recorded: Sequence[torch.Tensor]) -> torch.Tensor:
    """A loss over every recorded feature, standing in for STDG's masked terms (which read
    mask values, impossible on meta); its own cost is negligible next to the UNet's."""
    import torch

    total = torch.zeros((), device=recorded[0].device)
    for tensor in recorded:
        total = total + tensor.float().pow(2).mean()
    return total


def stdg_features(
    unet: Any, latent: torch.Tensor, context: torch.Tensor, stdg: StdgPasses
) -> list[torch.Tensor]:
    """STDG's partial forward with its capture processors; the recorded features."""
    from videodirector_cli.diffusion.attention.capture import (
        FeatureRecorder,
        capture_processors,
    )
    from videodirector_cli.diffusion.attention.swap import swapped_processors
    from videodirector_cli.diffusion.unet_call import batch_embeddings, run_to

    recorder = FeatureRecorder()
    processors = capture_processors(unet, recorder, stdg.blocks, stdg.temporal, stdg.keys)
    frames = latent.shape[2]
    if context.shape[0] != latent.shape[0] * frames:
        context = batch_embeddings([context] * latent.shape[0], frames)
    sample, context = latent.to(unet.dtype), context.to(unet.dtype)
    with swapped_processors(unet, processors):
        run_to(unet, sample, 500, context, stdg_stop_modules(unet, stdg))
    return [*recorder.temporal.values(), *recorder.keys.values()]


def _measure_stdg(
    unet: Any, latent: torch.Tensor, arch: Architecture, frames: int, stdg: StdgPasses
) -> tuple[int, int]:
    from torch.utils.flop_counter import FlopCounterMode

    current = latent.clone().requires_grad_(True)
    counter = FlopCounterMode(display=False)
    with counter:
        features = stdg_features(unet, current, _context(arch, frames, False), stdg)
        forward = counter.get_total_flops()
        # .backward, not autograd.grad: FlopCounterMode's module tracker hooks the leaves
        stdg_surrogate_loss(features).backward()
    return forward, counter.get_total_flops() - forward


# ------------------------------------------------------------------------------- the cache file

SHIPPED_SHAPES = (
    # (frames, latent h, latent w): 16 frames at 512x512 (the paper's) and 256x256 / 768x768
    (16, 64, 64),
    (16, 32, 32),
    (16, 96, 96),
    (8, 64, 64),
)


def write_cache(path: Path = COSTS_FILE) -> dict[str, Any]:
    """Measure the shipped shapes of SD1.5 + AnimateDiff v3 and write them to ``path``."""
    from videodirector_cli.diffusion.architecture import SD15_ANIMATEDIFF, named

    arch = named(SD15_ANIMATEDIFF)
    costs: dict[str, Any] = {}
    for frames, h, w in SHIPPED_SHAPES:
        for checkpointing in (False, True):
            measured = measure_costs(arch, frames, (h, w), StdgPasses(), checkpointing)
            costs[_key(arch, frames, (h, w), StdgPasses(), checkpointing)] = measured.as_dict()
    import torch

    data = {
        "about": "FLOPs of vdir's UNet passes on SD1.5 + AnimateDiff v3, counted on the meta "
        "device by diffusion/flops.py; regenerate with python -m videodirector_cli.diffusion.flops",
        "torch": torch.__version__,
        "costs": costs,
    }
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    return data


if __name__ == "__main__":
    written = write_cache()
    for entry in written["costs"].values():
        ratios = entry["ratios"]
        print(
            f"{entry['frames']} x {entry['latent_hw']}, checkpointing {entry['checkpointing']}: "
            f"forward {entry['forward_flop'] / 1e12:.2f} TFLOP, null-text backward "
            f"{ratios['null_text_backward']:.3f}, STDG forward {ratios['stdg_forward']:.3f}, "
            f"backward {ratios['stdg_backward']:.3f}"
        )
