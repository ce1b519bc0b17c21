"""Typed manifest records for tests that build a project by hand (what each stage would write)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from videodirector_cli.project.manifest import (
    EditRecord,
    FramesRecord,
    InversionRecord,
    MaskRecord,
    RecordStatus,
    RenderRecord,
    StageRecord,
)
from videodirector_cli.project.params import (
    EditParams,
    FramesParams,
    InversionParams,
    MaskParams,
    RenderParams,
)
from videodirector_cli.settings.edit import EditSettings
from videodirector_cli.settings.invert import InvertSettings
from videodirector_cli.settings.model import ModelChoice
from videodirector_cli.stages.invert import ALGORITHM_VERSION


def frames_record(
    count: int,
    frames_hash: str = "",
    size: int | tuple[int, int] = 32,
    status: RecordStatus = "done",
) -> FramesRecord:
    """``size``: (width, height), or one side of a square."""
    wh = (size, size) if isinstance(size, int) else size
    params = FramesParams(frames=count, start="frame 0", stride=1, fps=None, size=wh, fit="crop")
    return FramesRecord(status=status, params=params, outputs={"frames": frames_hash})


def masks_record(
    frames_hash: str, masks_hash: str, status: RecordStatus = "done", box: list[float] | None = None
) -> MaskRecord:
    params = MaskParams(method="shape", ellipse=False, box=box or [0, 0, 8, 8], shape="box")
    return MaskRecord(
        status=status, params=params, inputs={"frames": frames_hash}, outputs={"masks": masks_hash}
    )


def inversion_params(
    prompt: str = "a bear", steps: int = 2, model: str | None = "tiny", **changes: Any
) -> InversionParams:
    data: dict[str, Any] = {
        "prompt": prompt,
        "settings": InvertSettings(steps=steps),
        "uses_mask": False,
        "model": ModelChoice(model=model),
        "algorithm_version": ALGORITHM_VERSION,
        **changes,
    }
    return InversionParams(**data)


def inversion_record(
    inputs: dict[str, str] | None = None,
    outputs: dict[str, str] | None = None,
    status: RecordStatus = "done",
    **extra: Any,
) -> InversionRecord:
    """``extra``: record fields (progress, metrics, message) or params (prompt, steps, ...)."""
    record = {k: extra.pop(k) for k in list(extra) if k in StageRecord.model_fields}
    return InversionRecord(
        status=status,
        params=inversion_params(**extra),
        inputs=inputs or {},
        outputs=outputs or {},
        **record,
    )


def edit_record(
    inputs: dict[str, str] | None = None,
    outputs: dict[str, str] | None = None,
    status: RecordStatus = "done",
    prompt: str = "a tiger",
    inversion: str = "k",
    source_prompt: str = "a bear",
    **settings: Any,
) -> EditRecord:
    params = EditParams(
        prompt=prompt,
        source_prompt=source_prompt,
        inversion=inversion,
        settings=EditSettings(**settings),
    )
    return EditRecord(status=status, params=params, inputs=inputs or {}, outputs=outputs or {})


def render_record(inputs: dict[str, str], outputs: dict[str, str] | None = None) -> RenderRecord:
    params = RenderParams(compare=False, crf=18, fps=24.0, out="")
    return RenderRecord(status="done", params=params, inputs=inputs, outputs=outputs or {})


def inversion_files(root: Path, key: str, content: bytes, steps: int = 2) -> str:
    """Files where an inversion record says they are (their bytes need not parse: `vdir status`
    and `vdir render` only check that they are what was recorded); the hash to record."""
    from videodirector_cli.project.paths import ProjectPaths
    from videodirector_cli.stages.inversion_files import InversionFiles

    files = InversionFiles(ProjectPaths(root).inversion_dir(key))
    files.steps_dir.mkdir(parents=True, exist_ok=True)
    files.info_path.write_text("{}")
    for path in (files.pivots_path, *[files.step_path(i) for i in range(steps)]):
        path.write_bytes(content + path.name.encode())
    return files.content_hash(steps)


# ------------------------------------------------------------------ the session's edited project

EDITED_EDIT = ["edit", "a white tiger walking on rocks", "--reweight", "tiger=2"]
"""The edit conftest's ``edited_project`` made (named 'white-tiger'); rerun, it is up to date."""
EDITED_NAME = "white-tiger"
EDITED_INVERT = ["invert", "--model", "tiny", "--steps", "2"]
"""The command that finds the edited project's inversion up to date."""


@dataclass(frozen=True)
class EditedProject:
    root: Path
    stored: Any
    """The StoredInversion its inversion holds."""
    edit: dict[str, Any]
    """What `vdir edit --json` printed."""


def copy_project(root: Path, tmp_path: Path) -> Path:
    """A private copy of a shared project, for a test that writes."""
    copy = tmp_path / "project"
    shutil.copytree(root, copy)
    return copy
