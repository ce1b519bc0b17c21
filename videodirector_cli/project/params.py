"""What each stage record stores as its params: the stage's settings, typed, each value once.

These are what a stage was asked for after resolving it against the project (the masks that
were actually used, the cross-attention mode 'auto' chose, ...), so two runs with equal params
made the same result from the same inputs. Inputs and outputs are hashes beside them
(manifest.StageRecord).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from videodirector_cli.settings.edit import EditSettings
from videodirector_cli.settings.invert import InvertSettings
from videodirector_cli.settings.model import ModelChoice


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FramesParams(Params):
    frames: int
    start: str
    """As described to a person: 'frame 12' or '1.5s'."""
    stride: int | None
    fps: float | None
    size: tuple[int, int]
    """(width, height)."""
    fit: str


class MaskParams(Params):
    method: str
    """'sam2', 'import' or 'shape'."""
    ellipse: bool
    from_dir: str | None = None
    box: list[float] | None = None
    shape: str | None = None
    points: list[tuple[float, float, int]] | None = None
    """[x, y, label] each."""
    frame: int | None = None
    sam2: dict[str, Any] | None = None
    device: str | None = None


class InversionParams(Params):
    prompt: str
    settings: InvertSettings
    uses_mask: bool
    """Whether the project's masks were used (the --mask setting says whether they might be)."""
    model: ModelChoice
    """The model as the user named it; ``model_identity`` is what it resolved to."""
    algorithm_version: int
    model_identity: dict[str, str] | None = None
    key: str | None = None

    def shaping(self) -> dict[str, Any]:
        """What makes two requests the same inversion, known before the model is loaded."""
        return {
            "prompt": self.prompt,
            "settings": self.settings.shaping(),
            "uses_mask": self.uses_mask,
            "model": self.model.model_dump(mode="json"),
            "algorithm_version": self.algorithm_version,
        }


class EditParams(Params):
    prompt: str
    source_prompt: str
    inversion: str
    """The inversion's key (its guidance scale and model are in its own record)."""
    settings: EditSettings
    """As applied: mode resolved, target and mask 'none'/None when no mask was read, no
    dilation without --blend."""

    def changed(self, other: EditParams) -> list[str]:
        """Names of the params and settings that differ."""
        mine, theirs = _flat(self.model_dump(mode="json")), _flat(other.model_dump(mode="json"))
        return sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))


class RenderParams(Params):
    compare: bool
    crf: int
    fps: float
    out: str


def _flat(data: dict[str, Any]) -> dict[str, Any]:
    """The settings' fields beside the params' own, as a person names them (tau_s, mode)."""
    settings = data.pop("settings", {})
    return {**data, **settings}
