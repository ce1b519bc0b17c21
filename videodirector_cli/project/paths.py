"""Every path inside a project, derived in one place."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MANIFEST_NAME = "manifest.json"
STATE_DIR_NAME = ".vdir"


@dataclass(frozen=True)
class ProjectPaths:
    root: Path

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST_NAME

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR_NAME

    @property
    def lock(self) -> Path:
        return self.state_dir / "lock"

    def record_lock(self, section: str, key: str) -> Path:
        """The lock of one record that runs beside others (an edit: ``edits``, its name)."""
        return self.state_dir / "locks" / f"{section}-{key}.lock"

    # frames -----------------------------------------------------------------------------------
    @property
    def frames_dir(self) -> Path:
        return self.root / "frames"

    def frame(self, index: int) -> Path:
        return self.frames_dir / f"{index:05d}.png"

    def frame_files(self, count: int) -> list[Path]:
        return [self.frame(i) for i in range(count)]

    # masks ------------------------------------------------------------------------------------
    @property
    def masks_dir(self) -> Path:
        return self.root / "masks"

    def mask(self, index: int) -> Path:
        return self.masks_dir / f"{index:05d}.png"

    def mask_files(self, count: int) -> list[Path]:
        return [self.mask(i) for i in range(count)]

    @property
    def mask_sheet(self) -> Path:
        return self.masks_dir / "preview.png"

    @property
    def mask_overlay_video(self) -> Path:
        return self.masks_dir / "preview.mp4"

    # inversions -------------------------------------------------------------------------------
    @property
    def inversions_dir(self) -> Path:
        return self.root / "inversions"

    def inversion_dir(self, key: str) -> Path:
        return self.inversions_dir / key

    # edits --------------------------------------------------------------------------------------
    @property
    def edits_dir(self) -> Path:
        return self.root / "edits"

    def edit_dir(self, name: str) -> Path:
        return self.edits_dir / name

    def edit_frames_dir(self, name: str) -> Path:
        return self.edit_dir(name) / "frames"

    def edit_frame(self, name: str, index: int) -> Path:
        return self.edit_frames_dir(name) / f"{index:05d}.png"

    # renders ------------------------------------------------------------------------------------
    @property
    def renders_dir(self) -> Path:
        return self.root / "renders"

    # the report ---------------------------------------------------------------------------------
    @property
    def report_dir(self) -> Path:
        """`vdir report`'s default home: index.html and its videos in media/."""
        return self.root / "report"
