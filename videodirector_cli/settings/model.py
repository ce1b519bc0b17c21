"""Which weights to load and where to run them: the model options of invert, edit and eval."""

from __future__ import annotations

from typing import Any

from pydantic import Field

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
