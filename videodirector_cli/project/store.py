"""Open, create, lock and update a project. The only code that writes manifest.json."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from videodirector_cli import __version__
from videodirector_cli.errors import LockedError, ProjectError, UsageError, from_os_error
from videodirector_cli.project import manifest_v1
from videodirector_cli.project.atomic import (
    atomic_write_bytes,
    atomic_write_text,
    recover_replaced,
)
from videodirector_cli.project.file_index import FileIndex
from videodirector_cli.project.lock import ProjectLock, is_locked
from videodirector_cli.project.manifest import (
    RECORD_TYPES,
    SCHEMA_VERSION,
    Manifest,
    StageProgress,
    StageRecord,
    utc_now,
)
from videodirector_cli.project.manifest_checks import manifest_problems
from videodirector_cli.project.params import Params
from videodirector_cli.project.paths import MANIFEST_NAME, STATE_DIR_NAME, ProjectPaths

PROJECT_ENV = "VDIR_PROJECT"
MANIFEST_WAIT_S = 10.0
"""How long a writer beside others waits for the project lock to start its record."""
FINAL_WAIT_S = 3600.0
"""... and to record its finished result (another writer may hold the project for long)."""


def library_versions() -> dict[str, str]:
    """Versions of vdir and the libraries that shape results, recorded with each stage."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {"vdir": __version__}
    for package in ("torch", "diffusers", "transformers", "av", "sam2"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            continue
    return versions


def is_project_dir(folder: Path) -> bool:
    return (folder / MANIFEST_NAME).is_file() and (folder / STATE_DIR_NAME).is_dir()


def find_project_root(explicit: Path | None = None) -> Path:
    """--project, else $VDIR_PROJECT, else the nearest folder upwards holding a project."""
    if explicit is None and os.environ.get(PROJECT_ENV):
        explicit = Path(os.environ[PROJECT_ENV])
    if explicit is not None:
        folder = explicit.expanduser()
        if folder.exists() and not folder.is_dir():
            raise ProjectError(
                f"--project {folder} is a file, not a project folder",
                hint="pass the folder vdir init made (the one holding manifest.json)",
            )
        if not folder.is_dir():
            raise ProjectError(f"project folder {folder} does not exist")
        if not is_project_dir(folder):
            raise ProjectError(
                f"{folder} is not a vdir project", hint="create one with: vdir init VIDEO DIR"
            )
        return folder.resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if is_project_dir(folder):
            return folder
    raise ProjectError(
        f"no vdir project in {here} or any parent folder",
        hint="run 'vdir init VIDEO' here, or pass --project DIR",
    )


def read_manifest(path: Path) -> Manifest:
    """Parse manifest.json; a damaged one is reported, never repaired or overwritten."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ProjectError(f"{path} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProjectError(
            f"{path} is damaged ({exc.__class__.__name__}: {exc}); vdir will not overwrite it",
            hint="restore it from a backup or fix it by hand",
        ) from None
    if isinstance(raw, dict) and raw.get("schema_version", SCHEMA_VERSION) > SCHEMA_VERSION:
        raise ProjectError(
            f"{path} was written by a newer vdir (schema {raw['schema_version']})",
            hint="upgrade vdir",
        )
    try:
        if isinstance(raw, dict) and raw.get("schema_version") == manifest_v1.VERSION:
            raw = manifest_v1.upgrade(raw)
        manifest = Manifest.model_validate(raw)
    except (TypeError, AttributeError):  # schema-1 data of the wrong shape
        raise ProjectError(
            f"{path} is damaged (a schema 1 record of the wrong shape); vdir will not overwrite it",
            hint="restore it from a backup or fix it by hand",
        ) from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "top level"
        raise ProjectError(
            f"{path} is damaged (at {where}: {first.get('msg')}); vdir will not overwrite it",
            hint="restore it from a backup or fix it by hand",
        ) from None
    for where, what in manifest_problems(manifest):
        raise ProjectError(
            f"{path} is damaged (at {where}: {what}); vdir will not overwrite it",
            hint="restore it from a backup or fix it by hand",
        )
    return manifest


@dataclass
class Project:
    paths: ProjectPaths
    manifest: Manifest
    _lock: ProjectLock | None = field(default=None, repr=False)
    _index: FileIndex | None = field(default=None, repr=False)

    @property
    def file_index(self) -> FileIndex:
        """Sizes, mtimes and hashes of the project's files as vdir last saw them (a cache)."""
        if self._index is None:
            self._index = FileIndex(self.paths.root, self.paths.state_dir)
        return self._index

    # opening ----------------------------------------------------------------------------------
    @classmethod
    def open(cls, root: Path) -> Project:
        paths = ProjectPaths(Path(root))
        return cls(paths, read_manifest(paths.manifest))

    @classmethod
    def find(cls, explicit: Path | None = None) -> Project:
        return cls.open(find_project_root(explicit))

    @classmethod
    def create(cls, root: Path, force: bool = False) -> Project:
        """Make a new project in ``root``; the caller holds the lock while it fills it."""
        root = Path(root)
        if root.exists() and not root.is_dir():
            raise UsageError(f"{root} is a file, not a folder")
        if is_project_dir(root):
            if not force:
                raise ProjectError(
                    f"{root} is already a vdir project", hint="use --force to start it over"
                )
        elif root.is_dir() and any(root.iterdir()):
            raise ProjectError(
                f"{root} is not empty and not a vdir project",
                hint="choose an empty or new folder",
            )
        paths = ProjectPaths(root)
        paths.state_dir.mkdir(parents=True, exist_ok=True)
        return cls(paths, Manifest(vdir_version=__version__))

    # writing ----------------------------------------------------------------------------------
    @property
    def locked_by_someone(self) -> bool:
        return self._lock is None and is_locked(self.paths.lock)

    def record_running(self, section: str, key: str) -> bool:
        """Whether a 'running' record is really running: a writer holds the project, or the
        record's own lock (an edit running beside others)."""
        return self.locked_by_someone or is_locked(self.paths.record_lock(section, key))

    def record_lock(self, section: str, key: str, purpose: str) -> ProjectLock:
        """One record's lock (not the project's), held while that record is made: two
        processes never make the same edit, while edits of other names run at the same time."""
        what = f"{section.rstrip('s')} {key!r} of this project"
        return ProjectLock(self.paths.record_lock(section, key), purpose, what)

    @contextmanager
    def writing(self, purpose: str, wait: float = 0.0) -> Iterator[Project]:
        """Hold the project lock (waiting up to ``wait`` s for it); re-read the manifest under
        it so no update is lost.

        A project with symbolic links where vdir writes is refused before anything is touched.
        """
        self.paths.refuse_links()
        lock = ProjectLock(self.paths.lock, purpose)
        lock.acquire(wait)
        self._lock = lock
        try:
            recover_replaced(self.paths.root, self.paths.manifest)
            if self.paths.manifest.exists():
                self.manifest = read_manifest(self.paths.manifest)
            yield self
        finally:
            self._lock = None
            lock.release()

    def save(self) -> None:
        if self._lock is None:
            raise RuntimeError("Project.save() outside Project.writing()")
        self.manifest.updated_at = utc_now()
        atomic_write_text(self.paths.manifest, self.manifest.model_dump_json(indent=2) + "\n")
        if self._index is not None:
            self._index.save()

    def merge_record(self, slot: tuple[str, str | None], record: StageRecord, wait: float) -> bool:
        """Put ``record`` into the manifest as it is on disk now, under the project lock taken
        only for that (waiting up to ``wait`` s): how a record made beside other writers is
        saved without losing their updates. False when the lock stayed busy."""
        try:
            with self.writing("record", wait=wait):
                self._put(slot, record)
                self.save()
        except LockedError:
            return False
        return True

    @contextmanager
    def stage(
        self,
        record_slot: tuple[str, str | None],
        params: Params,
        inputs: dict[str, str],
        total: int = 0,
        shared: bool = False,
        keep_previous: bool = False,
    ) -> Iterator[StageRun]:
        """Record a stage as running, then done, failed or interrupted.

        ``record_slot`` is ("frames", None), ("masks", None), ("inversions", key),
        ("edits", name) or ("renders", name); ``params`` that section's params
        (project/params.py). The body sets outputs and metrics on the run.

        ``shared``: the caller holds the record's lock (``record_lock``), not the project's;
        each save merges the record into the manifest on disk under a short project lock
        (progress checkpoints are skipped while another writer holds it; the first and the
        final save wait for it).

        ``keep_previous``: for a stage that replaces a finished record's files all or nothing
        (mask, edit --force), a failure puts back the previous record (the old files are
        untouched, so it is still true): the manifest's bytes as they were, or, ``shared``,
        the previous record merged back in (other writers' records stay); the error line says
        what happened.
        """
        previous = getattr(self.manifest, record_slot[0])
        if record_slot[1] is not None:
            previous = previous.get(record_slot[1])
        before = None
        if keep_previous and previous is not None and self.paths.manifest.is_file():
            before = self.paths.manifest.read_bytes()
        record = RECORD_TYPES[record_slot[0]].model_validate(
            {
                "status": "running",
                "params": params,
                "inputs": inputs,
                "versions": library_versions(),
                "progress": StageProgress(done=0, total=total) if total else None,
            }
        )

        def persist(wait: float = FINAL_WAIT_S) -> None:
            """Save; shared, give up after ``wait`` s (0: a progress checkpoint, skipped)."""
            if not shared:
                self.save()
            elif not self.merge_record(record_slot, record, wait) and wait > 0:
                raise LockedError(
                    f"the project stayed locked for {wait:.0f} s, so "
                    f"{record_slot[0]} {record_slot[1]!r} could not be recorded",
                    hint="run the command again once the other vdir process is done",
                )

        self._put(record_slot, record)
        persist(MANIFEST_WAIT_S)
        run = StageRun(self, record, persist)
        try:
            yield run
        except BaseException as exc:
            error = from_os_error(exc) if isinstance(exc, OSError) else None
            if before is not None and not shared:
                with suppress(OSError):
                    atomic_write_bytes(self.paths.manifest, before)
                    self.manifest = read_manifest(self.paths.manifest)
            elif before is not None and previous is not None:
                with suppress(OSError, LockedError):
                    self._restore_shared(record_slot, previous, before)
            elif isinstance(exc, KeyboardInterrupt):
                record.status = "interrupted"
                record.message = "interrupted by the user"
                with suppress(OSError, LockedError):
                    persist()
            else:
                self._record_failure(record, error or exc, persist)
            if error is not None:
                raise error from exc
            raise
        record.status = "done"
        record.finished_at = utc_now()
        if record.progress is not None:
            record.progress.done = record.progress.total
        persist()

    def _restore_shared(
        self, slot: tuple[str, str | None], previous: StageRecord, before: bytes
    ) -> None:
        """Put a shared record's previous version back: the manifest's old bytes when nobody
        else changed it meanwhile, else the previous record merged into what is there."""
        with self.writing("record", wait=FINAL_WAIT_S):
            self._put(slot, previous)
            try:
                old: Manifest | None = Manifest.model_validate_json(before)
            except ValueError:  # a schema-1 manifest: merge instead
                old = None
            unchanged = {"updated_at"}
            if old is not None and old.model_dump(exclude=unchanged) == self.manifest.model_dump(
                exclude=unchanged
            ):
                atomic_write_bytes(self.paths.manifest, before)
                self.manifest = old
            else:
                self.save()

    def _record_failure(
        self, record: StageRecord, exc: BaseException, persist: Callable[[], None]
    ) -> None:
        """Record the failure and its one line; on a full disk the manifest itself may not be
        writable, and then the record reads 'interrupted' once the lock is released."""
        record.status = "failed"
        record.message = str(exc).splitlines()[0][:500] if str(exc) else type(exc).__name__
        with suppress(OSError, LockedError):
            persist()

    def _put(self, slot: tuple[str, str | None], record: StageRecord) -> None:
        section, key = slot
        if key is None:
            setattr(self.manifest, section, record)
        else:
            getattr(self.manifest, section)[key] = record


@dataclass
class StageRun:
    """Handle a running stage uses to report progress and results."""

    project: Project
    record: StageRecord
    persist: Callable[[float], None]

    def checkpoint(self, done: int, **metrics: Any) -> None:
        """Persist progress (after the stage's own files for that step are safely written)."""
        if self.record.progress is None:
            self.record.progress = StageProgress(done=done, total=done)
        self.record.progress.done = done
        self.record.metrics.update(metrics)
        self.persist(0.0)
