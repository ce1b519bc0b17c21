"""Every path inside a project, derived in one place."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from videodirector_cli.errors import ProjectError
from videodirector_cli.project.names import NAME_RULE, is_plain_name

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
        return _inside(self.inversions_dir, key)

    # edits --------------------------------------------------------------------------------------
    @property
    def edits_dir(self) -> Path:
        return self.root / "edits"

    def edit_dir(self, name: str) -> Path:
        return _inside(self.edits_dir, name)

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

    def render_file(self, name: str, suffix: str) -> Path:
        return _inside(self.renders_dir, name).with_name(f"{name}{suffix}")

    # links --------------------------------------------------------------------------------------
    @property
    def stage_dirs(self) -> tuple[Path, ...]:
        """The folders vdir's stages own (and replace, and delete on init --force)."""
        return (
            self.frames_dir,
            self.masks_dir,
            self.inversions_dir,
            self.edits_dir,
            self.renders_dir,
        )

    def symbolic_links(self) -> list[Path]:
        """Links where vdir writes: the state folder, its stage folders and their entries one
        level down (an inversion's or an edit's folder). vdir refuses to work through them."""
        found = [p for p in (self.manifest, self.state_dir, *self.stage_dirs) if p.is_symlink()]
        for folder in (self.inversions_dir, self.edits_dir):
            if folder.is_dir() and not folder.is_symlink():
                found += [p for p in folder.iterdir() if p.is_symlink()]
        return found

    def refuse_links(self) -> None:
        """ProjectError naming the first symbolic link where vdir would write or delete."""
        links = self.symbolic_links()
        if links:
            link = links[0]
            raise ProjectError(
                f"{link} is a symbolic link (to {link.readlink()}); vdir does not write or "
                "delete through links inside a project",
                hint="replace it by a real folder (move the files in), then run the command again",
            )


def _inside(folder: Path, name: str) -> Path:
    """``folder / name`` for a name that cannot lead out of ``folder``."""
    if not is_plain_name(name):
        raise ProjectError(
            f"{name!r} is not a plain name for a folder in {folder} ({NAME_RULE})",
            hint="manifest.json was edited by hand; restore it from a backup",
        )
    return folder / name
