"""manifest.json: what each stage was asked to do, what it read, what it wrote.

Plain pydantic data. A stage record keeps its params and the hashes of its inputs and outputs;
'stale' means an input hash no longer matches what upstream now holds. 'interrupted' is a record
left 'running' by a process that no longer holds the project lock (kill -9, power loss).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1
TOOL_MARK: Literal["vdir"] = "vdir"
NO_MASK = "none"
"""Recorded as the "masks" input of a stage that used no mask: later masks do not make it stale."""

RecordStatus = Literal["running", "done", "failed", "interrupted"]
StageState = Literal["missing", "running", "done", "stale", "interrupted", "failed"]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class StageProgress(BaseModel):
    model_config = ConfigDict(extra="forbid")
    done: int = 0
    total: int = 0


class StageRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: RecordStatus
    params: dict[str, Any] = Field(default_factory=dict)
    inputs: dict[str, str] = Field(default_factory=dict)
    outputs: dict[str, str] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    versions: dict[str, str] = Field(default_factory=dict)
    started_at: datetime = Field(default_factory=utc_now)
    finished_at: datetime | None = None
    progress: StageProgress | None = None
    message: str | None = None


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
    frames: StageRecord | None = None
    masks: StageRecord | None = None
    inversions: dict[str, StageRecord] = Field(default_factory=dict)
    current_inversion: str | None = None
    edits: dict[str, StageRecord] = Field(default_factory=dict)
    renders: dict[str, StageRecord] = Field(default_factory=dict)

    @property
    def frame_count(self) -> int:
        if self.frames is None or self.frames.status != "done":
            return 0
        return int(self.frames.params.get("frames", 0))


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
    if current_inputs is not None:
        for name, recorded in record.inputs.items():
            if recorded == NO_MASK and name == "masks":
                continue
            if current_inputs.get(name) != recorded:
                return "stale"
    return "done"
