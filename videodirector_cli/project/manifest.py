"""manifest.json: what each stage was asked to do, what it read, what it wrote.

Plain pydantic data. A stage record keeps its params (project/params.py: the stage's settings,
typed) and the hashes of its inputs and outputs; 'stale' means an input hash no longer matches
what upstream now holds. 'interrupted' is a record left 'running' by a process that no longer
holds the project lock (kill -9, power loss). Schema 1 manifests (vdir 0.1) are upgraded when
read (project/manifest_v1.py) and written back as schema 2 by the next command that writes.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from videodirector_cli.project.params import (
    EditParams,
    FramesParams,
    InversionParams,
    MaskParams,
    RenderParams,
)

SCHEMA_VERSION = 2
TOOL_MARK: Literal["vdir"] = "vdir"
NO_MASK = "none"
"""Recorded as the "masks" input of a stage that used no mask: later masks do not make it stale."""

RecordStatus = Literal["running", "done", "failed", "interrupted"]
StageState = Literal["missing", "running", "done", "stale", "damaged", "interrupted", "failed"]
"""'damaged': done, but its files were deleted, truncated or changed since (vdir status)."""


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class StageProgress(BaseModel):
    model_config = ConfigDict(extra="forbid")
    done: int = 0
    total: int = 0


class StageRecord(BaseModel):
    """What every record holds; each section's record adds its typed ``params``."""

    model_config = ConfigDict(extra="forbid")

    status: RecordStatus
    inputs: dict[str, str] = Field(default_factory=dict)
    outputs: dict[str, str] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    versions: dict[str, str] = Field(default_factory=dict)
    started_at: datetime = Field(default_factory=utc_now)
    finished_at: datetime | None = None
    progress: StageProgress | None = None
    message: str | None = None


class FramesRecord(StageRecord):
    params: FramesParams


class MaskRecord(StageRecord):
    params: MaskParams


class InversionRecord(StageRecord):
    params: InversionParams


class EditRecord(StageRecord):
    params: EditParams


class RenderRecord(StageRecord):
    params: RenderParams


RECORD_TYPES: dict[str, type[StageRecord]] = {
    "frames": FramesRecord,
    "masks": MaskRecord,
    "inversions": InversionRecord,
    "edits": EditRecord,
    "renders": RenderRecord,
}
"""The record class of each manifest section."""


class SourceInfo(BaseModel):
    """The video the project was made from and how frames were chosen."""

    model_config = ConfigDict(extra="forbid")

    path: str
    sha256: str
    container: str | None = None
    codec: str | None = None
    fps: float
    width: int
    height: int
    rotation: int = 0
    frame_count: int | None = None
    frame_times: list[float] = Field(default_factory=list)
    frame_indices: list[int] = Field(default_factory=list)
    output_fps: float
    size: tuple[int, int]
    fit: str


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tool: Literal["vdir"] = TOOL_MARK
    schema_version: int = SCHEMA_VERSION
    vdir_version: str
    created_at: datetime = Field(default_factory=utc_now)
    updated_at: datetime = Field(default_factory=utc_now)
    prompt: str | None = None
    source: SourceInfo | None = None
    frames: FramesRecord | None = None
    masks: MaskRecord | None = None
    inversions: dict[str, InversionRecord] = Field(default_factory=dict)
    current_inversion: str | None = None
    edits: dict[str, EditRecord] = Field(default_factory=dict)
    renders: dict[str, RenderRecord] = Field(default_factory=dict)

    @property
    def frame_count(self) -> int:
        if self.frames is None or self.frames.status != "done":
            return 0
        return self.frames.params.frames


def stage_state(
    record: StageRecord | None, current_inputs: dict[str, str] | None, locked: bool
) -> StageState:
    """Classify a record against what its inputs hash to now.

    ``current_inputs`` holds, for each input the stage declared, the hash upstream holds now;
    None skips the staleness check.
    """
    if record is None:
        return "missing"
    if record.status == "running":
        return "running" if locked else "interrupted"
    if record.status in ("interrupted", "failed"):
        return record.status
    if current_inputs is not None and changed_inputs(record, current_inputs):
        return "stale"
    return "done"


def changed_inputs(record: StageRecord, current_inputs: dict[str, str]) -> list[str]:
    """The inputs (lineage names: "frames", "masks", "inversion:KEY", ...) that changed since
    the record was made: what makes it stale."""
    return [
        name
        for name, recorded in record.inputs.items()
        if not (recorded == NO_MASK and name == "masks") and current_inputs.get(name) != recorded
    ]
