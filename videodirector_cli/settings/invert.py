"""`vdir invert`'s settings: DDIM steps, guidance, the null-text optimisation and STDG."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, model_validator

from videodirector_cli.errors import UsageError
from videodirector_cli.settings.base import Settings, in_range, option_name
from videodirector_cli.settings.model import ModelChoice, RunChoice

NullMode = Literal["per-frame", "shared"]
Target = Literal["foreground", "background"]
MaskUse = Literal["auto", "none"]
InversionMethod = Literal["null-text", "negative-prompt"]

FIRST_UP_BLOCK_WEIGHT = 20000.0
"""The reference's effective STDG weight of up_blocks.1 ..."""
OTHER_BLOCK_WEIGHT = 10000.0
"""... and of every other block."""


class NullTextSettings(Settings):
    """Null-text optimisation (Mokady et al.), one null per frame or one shared by all."""

    mode: NullMode = Field(
        "per-frame",
        description="'per-frame': one optimised null embedding per frame (the paper's); "
        "'shared': one for all frames (null-text inversion as for images).",
        json_schema_extra={"option": "--null"},
    )
    inner_steps: int = Field(10, description="Most Adam updates of the null per step.")
    learning_rate: float = Field(
        1e-2,
        description="Adam learning rate at the first step (halves linearly by the last).",
        json_schema_extra={"option": "--lr"},
    )
    early_stop: float = Field(
        1e-5,
        description="A step's updates stop once its latent MSE is below this plus step x "
        "--early-stop-slope.",
    )
    early_stop_slope: float = Field(2e-5, description="Per-step growth of --early-stop.")

    def lr_at(self, step: int, steps: int) -> float:
        return self.learning_rate * (1.0 - step / (2.0 * steps))

    def threshold_at(self, step: int) -> float:
        return self.early_stop + step * self.early_stop_slope

    def check(self) -> None:
        in_range("--inner-steps", self.inner_steps, 0, MAX_INNER_STEPS)
        if not math.isfinite(self.learning_rate) or self.learning_rate <= 0:
            raise UsageError(f"--lr must be a finite number above 0, not {self.learning_rate:g}")
        in_range("--lr", self.learning_rate, 0, 10.0)
        in_range("--early-stop", self.early_stop, 0, 1e6)
        in_range("--early-stop-slope", self.early_stop_slope, 0, 1e6)


MAX_STEPS = 1000
"""The DDIM grid of a 1000-timestep scheduler has at most one step per timestep."""
MAX_INNER_STEPS = 10_000
MAX_SEED = 2**63 - 1
"""torch.manual_seed takes seeds up to this."""

DEFAULT_MAX_RATIO = 0.25
"""--stdg-max-ratio's default, from the toy-model sweep in docs/inversion.md."""


class STDGSettings(Settings):
    """Spatial-temporal decoupled guidance (paper eq. 2-5): which blocks, which weights."""

    enabled: bool = Field(
        True,
        description="Guide the null-text optimisation with STDG.",
        json_schema_extra={
            "option": "--no-stdg",
            "cli_help": "Skip spatial-temporal decoupled guidance (STDG).",
        },
    )
    blocks: tuple[str, ...] = Field(
        ("up_blocks.1", "up_blocks.2"),
        description="UNet blocks whose temporal attention and self-attention keys STDG compares.",
        json_schema_extra={"option": "--stdg-blocks"},
    )
    block_weights: tuple[float, ...] = Field(
        (),
        description="One STDG weight per block, comma-separated. Default: "
        f"{FIRST_UP_BLOCK_WEIGHT:g} for up_blocks.1, {OTHER_BLOCK_WEIGHT:g} for any other "
        "(the reference's values).",
    )
    eta_f: float = Field(0.5, description="STDG motion guidance inside the mask.")
    eta_b: float = Field(
        0.5, description="STDG motion guidance outside the mask (0.2-0.8 in the paper)."
    )
    zeta_f: float = Field(0.0, description="STDG appearance guidance inside the mask.")
    zeta_b: float = Field(0.5, description="STDG appearance guidance outside the mask.")
    target: Target = Field(
        "foreground",
        description="What the edit will change: 'foreground' (the masked object) or "
        "'background' (swaps the foreground and background coefficients).",
    )
    scale: float = Field(
        1.0,
        description="Multiplies the STDG gradient (the reference's grad_guidance_scale, 1 in "
        "all its configs).",
        json_schema_extra={"option": "--stdg-scale"},
    )
    max_ratio: float = Field(
        DEFAULT_MAX_RATIO,
        description="Bound on the applied STDG term per frame: at most this times the RMS of "
        "the step's conditional noise prediction (chosen by the sweep in docs/inversion.md).",
        json_schema_extra={"option": "--stdg-max-ratio"},
    )

    @model_validator(mode="before")
    @classmethod
    def _default_weights(cls, data: Any) -> Any:
        """No weights given (None or empty): the reference's weight for each block."""
        if isinstance(data, dict) and not data.get("block_weights"):
            blocks = data.get("blocks", cls.model_fields["blocks"].default)
            weights = [
                FIRST_UP_BLOCK_WEIGHT if b == "up_blocks.1" else OTHER_BLOCK_WEIGHT for b in blocks
            ]
            data = {**data, "block_weights": weights}
        return data

    def check(self) -> None:
        for value, option in ((self.scale, "--stdg-scale"), (self.max_ratio, "--stdg-max-ratio")):
            if not math.isfinite(value) or value < 0:
                raise UsageError(f"{option} must be a finite number >= 0, not {value:g}")
        # Weights have no upper limit: the bound (--stdg-max-ratio) caps what they apply.
        for name in ("eta_f", "eta_b", "zeta_f", "zeta_b"):
            in_range(option_name(STDGSettings, name), getattr(self, name), 0, math.inf)
        for weight in self.block_weights:
            in_range("--block-weights", weight, 0, math.inf)
        if not self.blocks:
            raise UsageError("--stdg-blocks needs at least one block, e.g. up_blocks.1,up_blocks.2")
        if len(self.block_weights) != len(self.blocks):
            raise UsageError(
                f"--block-weights gives {len(self.block_weights)} weights for "
                f"{len(self.blocks)} blocks"
            )


class InvertSettings(Settings):
    """Everything `vdir invert` is asked besides the prompt and the model."""

    steps: int = Field(50, description="DDIM steps (the same grid is used for editing).")
    guidance_scale: float = Field(
        8.5,
        description="Classifier-free guidance weight w in eps_u + w (eps_c - eps_u), for the "
        "null-text optimisation and the edit. 8.5 is the reference's eps_c + 7.5 (eps_c - eps_u).",
        json_schema_extra={"option": "--cfg"},
    )
    negative_prompt: str = Field(
        "",
        description="Encoded as the initial null of the optimisation and the unconditional "
        "embedding of the plain-DDIM report (as the reference).",
    )
    method: InversionMethod = Field(
        "null-text",
        description="'null-text': optimise a null embedding per step (the paper's); "
        "'negative-prompt': the source prompt's embedding is the null (Miyake et al. 2023), "
        "nothing optimised: about 1 UNet forward per step instead of up to 12, and a less "
        "exact reconstruction (docs/inversion.md).",
    )
    null_text: NullTextSettings = Field(default_factory=NullTextSettings)
    stdg: STDGSettings = Field(default_factory=STDGSettings)
    mask: MaskUse = Field(
        "auto",
        description="'auto': use the project's masks when there are any; 'none': ignore them "
        "(the whole frame is foreground, background STDG terms are off).",
    )
    seed: int = Field(0, description="Random seed (for exact reruns).")
    window: int | None = Field(
        None,
        description="Frames per UNet call: a longer clip is seen through overlapping windows "
        "of this many frames (docs/long-clips.md). Default: the whole clip in one call when the "
        "motion module's positional encodings cover it, else windows of half their length (16 "
        "for AnimateDiff, its training length).",
    )
    window_overlap: int | None = Field(
        None,
        description="Least overlap of neighbouring windows, in frames (default: half the "
        "window, 8 of 16, measured in docs/long-clips.md; 4 is cheaper with more visible seams).",
    )
    report: bool = Field(
        True,
        description="Measure the reconstruction (optimised vs plain DDIM inversion) at the end.",
        json_schema_extra={
            "option": "--no-report",
            "cli_help": "Skip the reconstruction report (it costs 2 UNet passes per step and "
            "decoding).",
        },
    )

    def check(self) -> None:
        if self.steps < 1:
            raise UsageError(f"--steps must be at least 1, not {self.steps}")
        in_range("--steps", self.steps, 1, MAX_STEPS, hint="DDIM has at most one step per timestep")
        if not math.isfinite(self.guidance_scale) or self.guidance_scale < 1.0:
            raise UsageError(f"--cfg must be 1 or more, not {self.guidance_scale}")
        in_range("--cfg", self.guidance_scale, 1.0, 100.0)
        in_range("--seed", self.seed, 0, MAX_SEED)
        if self.window is not None and self.window < 1:
            raise UsageError(f"--window must be at least 1 frame, not {self.window}")
        if self.window_overlap is not None and self.window_overlap < 0:
            raise UsageError(f"--window-overlap must be 0 or more, not {self.window_overlap}")
        if (
            self.window is not None
            and self.window_overlap is not None
            and self.window_overlap >= self.window
        ):
            raise UsageError(
                f"--window-overlap {self.window_overlap} must be smaller than --window "
                f"{self.window}"
            )
        self.null_text.check()
        self.stdg.check()

    def shaping(self) -> dict[str, Any]:
        """The settings that determine the result: not --mask (the masks actually used count)
        nor --no-report, no STDG coefficients when STDG is off, and the window settings only
        when given (so inversions made before they existed keep their keys). The default method
        is left out too (same reason); the negative-prompt method drops what it does not use
        (the null-text settings, the negative prompt)."""
        data = self.model_dump(mode="json", exclude={"mask", "report"})
        for name in ("window", "window_overlap"):
            if data[name] is None:
                del data[name]
        if self.method == "null-text":
            del data["method"]
        else:
            del data["null_text"], data["negative_prompt"]
        data["stdg"] = data["stdg"] if self.stdg.enabled else None
        if data["stdg"] is not None:
            del data["stdg"]["enabled"]
        return data


class InvertRequest(Settings):
    """What the user asked `vdir invert` for (the command's options, or a test's)."""

    prompt: str | None = Field(
        None,
        description="Source prompt describing the video as it is ('a brown bear walking on "
        "rocks'). Sets the project's prompt; default: the one given to vdir init.",
    )
    settings: InvertSettings = Field(default_factory=InvertSettings)
    model: ModelChoice = Field(default_factory=ModelChoice)
    run: RunChoice = Field(default_factory=RunChoice)

    def check(self) -> None:
        self.run.check()
        self.settings.check()
