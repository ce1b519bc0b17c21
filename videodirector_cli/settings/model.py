"""Which weights to load and where to run them: the model options of invert, edit and eval."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from videodirector_cli.errors import UsageError
from videodirector_cli.settings.base import Settings


def device_field() -> Any:
    """The --device setting, shared by every command that runs a model."""
    return Field("auto", description="auto (cuda, then mps, then cpu), cuda, cuda:N, mps or cpu.")


class ModelChoice(Settings):
    """The model as the user named it (resolved to weights and an identity by the loader)."""

    model: str | None = Field(
        None,
        description="Base model: a hub id, a local diffusers folder, a single "
        ".safetensors/.ckpt SD1.5 checkpoint, or a built-in name ('toy', 'tiny'). Default: "
        "Realistic Vision V6.0 B1.",
    )
    motion_adapter: str | None = Field(
        None,
        description="AnimateDiff motion adapter: a hub id, a local folder, or an original "
        "motion-module file such as v3_sd15_mm.ckpt. Default: AnimateDiff v3.",
    )
    vae: str | None = Field(
        None, description="Optional VAE override: hub id, local folder or single file."
    )
    device: str = device_field()
    dtype: str = Field(
        "auto", description="auto (bf16 on CUDA, fp16 on MPS, fp32 on CPU), bf16, fp16 or fp32."
    )

    @property
    def names_weights(self) -> bool:
        """True when any of --model, --motion-adapter, --vae was given."""
        return any(v is not None for v in (self.model, self.motion_adapter, self.vae))


MEMORY_CHOICES = ("auto", "fast", "low", "lowest")


class RunChoice(Settings):
    """How a run uses the accelerator: what it costs in memory and time, never what it computes
    (so no part of an inversion's or an edit's key)."""

    memory: str = Field(
        "auto",
        description="GPU memory plan: auto (the fastest that fits, from the estimate and the "
        "device's free memory), fast (everything on the GPU), low (activation checkpointing, "
        "text encoder and VAE offloaded, VAE one frame per call) or lowest (low + the UNet's "
        "layers offloaded one at a time). Results are the same with every plan.",
    )
    plan: bool = Field(
        False,
        description="Print the predicted peak GPU memory, the UNet work and a time range per "
        "GPU class for this project, without loading weights, and exit.",
    )
    gpu: str | None = Field(
        None,
        description="With --plan: the GPU class to estimate the time for (e.g. 4090, a100, "
        "h100). Default: every known class.",
    )

    def check(self) -> None:
        if self.memory.strip().lower() not in MEMORY_CHOICES:
            raise UsageError(
                f"unknown --memory {self.memory!r}", hint="choose " + ", ".join(MEMORY_CHOICES)
            )
