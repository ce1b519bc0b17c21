"""`vdir edit`'s settings: when each attention control runs, the word mapping, blending."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

from videodirector_cli.errors import UsageError
from videodirector_cli.settings.base import Settings, in_range
from videodirector_cli.settings.invert import MaskUse, Target
from videodirector_cli.settings.model import ModelChoice, RunChoice

EditMode = Literal["auto", "replace", "refine"]


class EditSettings(Settings):
    """Everything that shapes an edit besides the prompts, the inversion and the model."""

    tau_s: float = Field(
        0.4,
        description="Fraction of the steps that use SA-I (the reconstruction's self-attention "
        "maps lay out the edit); SA-II runs for the rest. The reference tunes it per clip in "
        "0.3-0.6: higher keeps more of the source's layout.",
    )
    tau_c: float = Field(
        0.8,
        description="Fraction of the steps with cross-attention control (shared words take the "
        "source's maps; reweighting applies).",
    )
    sa2_layers: str = Field(
        "decoder",
        description="Spatial self-attention layers for SA-II: 'decoder' (the up blocks; layers "
        "7-15 in SD1.5, as the reference), 'all', 'none', or a comma list of call-order indices, "
        "ranges (7-15) and block names (up_blocks.1).",
    )
    mode: EditMode = Field(
        "refine",
        description="Cross-attention mapping: 'refine' aligns the prompts' words (new words "
        "keep the edit's own maps; every reference config uses it), 'replace' swaps words one "
        "for one (same word count), 'auto' picks replace when the word counts match.",
    )
    reweight: dict[str, float] = Field(
        default_factory=dict,
        description="WORD=VALUE: scale the attention to a word of the edit prompt (e.g. "
        "tiger=2 to strengthen it, 0.5 to soften it). Repeatable.",
    )
    blend: bool = Field(
        False,
        description="Beyond the paper: after every step keep the reconstruction's latents "
        "outside the (dilated) mask, so the background matches the source exactly. Needs "
        "masks.",
    )
    blend_dilate: int = Field(
        0,
        description="Grow the --blend region by this many frame pixels (rounded up to whole "
        "latent cells of 8 pixels), so an edited object may be a little larger.",
    )
    mask: MaskUse = Field(
        "auto",
        description="'auto': use the project's masks when it has them (SA-II keeps source "
        "content out of the masked region); 'none': ignore them.",
    )
    target: Target | None = Field(
        None,
        description="What the edit changes: 'foreground' (the masked object) or 'background' "
        "(everything else: SA-II and --blend then protect the object). Default: the "
        "inversion's --target.",
    )
    sa1: bool = Field(
        True,
        description="SA-I: the first steps take the reconstruction's self-attention maps.",
        json_schema_extra={"option": "--no-sa1", "cli_help": "Ablation: turn SA-I off."},
    )
    sa2: bool = Field(
        True,
        description="SA-II: the later steps attend to the reconstruction outside the mask.",
        json_schema_extra={"option": "--no-sa2", "cli_help": "Ablation: turn SA-II off."},
    )
    cross: bool = Field(
        True,
        description="Cross-attention control: word swap or refinement, and reweighting.",
        json_schema_extra={
            "option": "--no-cross",
            "cli_help": "Ablation: turn cross-attention control off.",
        },
    )
    sa1_max_tokens: int = Field(
        32 * 32,
        description="SA-I only where a frame has at most this many tokens (the reference's "
        "32x32 limit). Not a command-line option.",
    )

    def check(self) -> None:
        for name, value in (("--tau-s", self.tau_s), ("--tau-c", self.tau_c)):
            if not 0.0 <= value <= 1.0:
                raise UsageError(f"{name} must be between 0 and 1, not {value}")
        if self.blend_dilate < 0:
            raise UsageError("--blend-dilate must be 0 or more pixels")
        in_range("--blend-dilate", self.blend_dilate, 0, 512, hint="pixels around the mask")
        in_range("sa1_max_tokens", self.sa1_max_tokens, 1, 1 << 20)
        for word, value in self.reweight.items():
            if not word.strip() or not math.isfinite(value) or value < 0:
                raise UsageError(
                    f"--reweight '{word}={value:g}' is not WORD=VALUE with a non-negative number",
                    hint="e.g. --reweight tiger=2 (repeat the option for several words)",
                )

    @property
    def uses_masks(self) -> bool:
        """Masks matter to SA-II and --blend only; an edit without either does not read them."""
        return self.mask != "none" and (self.sa2 or self.blend)


def parse_reweight(items: list[str]) -> dict[str, float]:
    """['tiger=2', 'white=0.5'] as typed on the command line -> {'tiger': 2.0, 'white': 0.5}."""
    weights: dict[str, float] = {}
    for item in items:
        word, sep, value = item.rpartition("=")
        word = word.strip()
        try:
            number = float(value)
        except ValueError:
            number = float("nan")
        if not sep or not word or number != number or number < 0:
            raise UsageError(
                f"--reweight {item!r} is not WORD=VALUE with a non-negative number",
                hint="e.g. --reweight tiger=2 (repeat the option for several words)",
            )
        weights[word] = number
    return weights


class EditRequest(Settings):
    """What the user asked `vdir edit` for."""

    prompt: str = Field(
        description="The edited video's description, written like the source prompt with the "
        "words that change: 'a tiger walking on rocks' for 'a brown bear walking on rocks'."
    )
    name: str | None = Field(
        None,
        description="Folder name under edits/ (letters, digits, . _ -). Default: the prompt's "
        "new words, e.g. 'tiger'; a different edit with the same words gets 'tiger-2'.",
    )
    inversion: str | None = Field(
        None,
        description="Inversion KEY (or a unique prefix; vdir status lists them). Default: the "
        "project's current inversion.",
    )
    force: bool = Field(
        False,
        description="Replace an existing edit of the same --name made with other settings, or "
        "redo an up-to-date one.",
    )
    settings: EditSettings = Field(default_factory=EditSettings)
    model: ModelChoice = Field(default_factory=ModelChoice)
    run: RunChoice = Field(default_factory=RunChoice)

    def check(self) -> None:
        self.run.check()
        if not self.prompt.strip():
            raise UsageError(
                "the edit prompt is empty", hint='vdir edit "a tiger walking on rocks"'
            )
        self.settings.check()
