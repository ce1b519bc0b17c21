"""The on-disk format of one inversion: what `vdir invert` writes and `vdir edit` reads.

The in-memory inversion it reads into is diffusion/trajectory.py's ``StoredInversion``.

``inversions/<key>/`` holds

- ``pivots.safetensors``: tensor "pivots" (T+1, 1, C, F, h, w) float32, the DDIM-inversion
  latents z*_0 (index 0, the clean latent) .. z*_T (index T, at the first denoising timestep);
  metadata "key", "timesteps" (JSON list, denoising order). Written once, before step 0.
- ``steps/step_NNNN.safetensors``, one per denoising step i (i = 0 runs at timesteps[0] = T):
  "null" (F, L, D) or (1, L, D) float32, the optimised null used at this step; "latent" z_t, the
  latent the step starts from (1, C, F, h, w) float32 (the pivot z*_T for i = 0); "next_latent"
  the latent after the step; "guidance" (1, C, F, h, w) float32 when STDG is on: the bounded,
  scaled G the step applied (edit adds sqrt(1 - alpha_bar_t) times it). Metadata: key, step,
  timestep, loss, iterations, guidance_loss, guidance_ratio (before the bound, max over frames),
  guidance_ratio_mean, applied_ratio (after the bound, mean), bounded ("1" when it acted).
- ``inversion.json``: params and the report, written when the inversion completes.

Every file is written atomically (temp file + rename), so a step file that exists is complete:
resuming after a kill continues at ``completed_steps()``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from videodirector_cli.diffusion.trajectory import StoredInversion, TrajectoryStep
from videodirector_cli.errors import InputError, StaleError
from videodirector_cli.project.atomic import TEMP_PREFIX, atomic_path, atomic_write_json
from videodirector_cli.project.canonical import canonical_header
from videodirector_cli.project.fingerprint import hash_files

if TYPE_CHECKING:
    import torch

    from videodirector_cli.project.file_index import FileIndex

FORMAT_VERSION = 1
PIVOTS_NAME = "pivots.safetensors"
STEPS_DIR = "steps"
INFO_NAME = "inversion.json"
_STEP_RE = re.compile(r"^step_(\d{4,})\.safetensors$")


class InversionFiles:
    """Reads and writes ``inversions/<key>/``. With the project's ``index`` (file_index.py)
    every file written is remembered, and a step file changed since is not counted as done."""

    def __init__(self, folder: Path, index: FileIndex | None = None) -> None:
        self.folder = Path(folder)
        self.index = index

    # paths ------------------------------------------------------------------------------------
    @property
    def pivots_path(self) -> Path:
        return self.folder / PIVOTS_NAME

    @property
    def steps_dir(self) -> Path:
        return self.folder / STEPS_DIR

    @property
    def info_path(self) -> Path:
        return self.folder / INFO_NAME

    def step_path(self, step: int) -> Path:
        return self.steps_dir / f"step_{step:04d}.safetensors"

    # pivots -----------------------------------------------------------------------------------
    def save_pivots(self, key: str, pivots: torch.Tensor, timesteps: list[int]) -> None:
        from safetensors.torch import save_file

        if pivots.shape[0] != len(timesteps) + 1:
            raise ValueError(f"{pivots.shape[0]} pivots for {len(timesteps)} steps")
        metadata = {
            "key": key,
            "timesteps": json.dumps([int(t) for t in timesteps]),
            "format": str(FORMAT_VERSION),
        }
        with atomic_path(self.pivots_path) as tmp:
            save_file({"pivots": _cpu_f32(pivots)}, str(tmp), metadata=metadata)
            canonical_header(tmp)
        self._remember(self.pivots_path)

    def has_pivots(self) -> bool:
        return self.pivots_path.is_file()

    def has_usable_pivots(self) -> bool:
        """Pivots there and unchanged since they were written (a resume may reuse them)."""
        return self.has_pivots() and self._intact(self.pivots_path)

    def load_pivots(self) -> tuple[torch.Tensor, list[int], str]:
        """(pivots, timesteps, key)."""
        tensors, metadata = _read(self.pivots_path)
        return tensors["pivots"], json.loads(metadata["timesteps"]), metadata.get("key", "")

    # steps ------------------------------------------------------------------------------------
    def save_step(self, key: str, result: TrajectoryStep) -> None:
        from safetensors.torch import save_file

        tensors = {
            "null": _cpu_f32(result.null),
            "latent": _cpu_f32(result.latent),
            "next_latent": _cpu_f32(result.next_latent),
        }
        if result.guidance is not None:
            tensors["guidance"] = _cpu_f32(result.guidance)
        metadata = {
            "key": key,
            "step": str(result.step),
            "timestep": str(result.timestep),
            "loss": repr(float(result.loss)),
            "iterations": str(int(result.iterations)),
            "guidance_loss": repr(float(result.guidance_loss)),
            "guidance_ratio": repr(float(result.guidance_ratio)),
            "guidance_ratio_mean": repr(float(result.guidance_ratio_mean)),
            "applied_ratio": repr(float(result.applied_ratio)),
            "bounded": "1" if result.bounded else "0",
            "format": str(FORMAT_VERSION),
        }
        with atomic_path(self.step_path(result.step)) as tmp:
            save_file(tensors, str(tmp), metadata=metadata)
            canonical_header(tmp)
        self._remember(self.step_path(result.step))

    def _remember(self, path: Path) -> None:
        if self.index is not None:
            self.index.remember([path])

    def _intact(self, path: Path) -> bool:
        """False for a file vdir remembers with other content (changed or truncated since)."""
        if self.index is None:
            return True
        entry = self.index.known(path)
        return entry is None or self.index.digest(path) == entry[2]

    def load_step(self, step: int) -> TrajectoryStep:
        tensors, metadata = _read(self.step_path(step))
        return TrajectoryStep(
            step=int(metadata["step"]),
            timestep=int(metadata["timestep"]),
            null=tensors["null"],
            latent=tensors["latent"],
            next_latent=tensors["next_latent"],
            guidance=tensors.get("guidance"),
            loss=float(metadata.get("loss", "nan")),
            iterations=int(metadata.get("iterations", "0")),
            guidance_loss=float(metadata.get("guidance_loss", "0.0")),
            guidance_ratio=float(metadata.get("guidance_ratio", "0.0")),
            guidance_ratio_mean=float(metadata.get("guidance_ratio_mean", "0.0")),
            applied_ratio=float(metadata.get("applied_ratio", "0.0")),
            bounded=metadata.get("bounded", "0") == "1",
        )

    def completed_steps(self, key: str | None = None) -> int:
        """How many consecutive step files exist from step 0 (temp leftovers ignored).

        With ``key``, a file written for another inversion does not count; nor does one that
        changed since it was written (the index knows), so a resume never reuses it.
        """
        count = 0
        while True:
            path = self.step_path(count)
            if not path.is_file() or not self._intact(path):
                return count
            if key is not None and _metadata(path).get("key") != key:
                return count
            count += 1

    def step_files(self, count: int | None = None) -> list[Path]:
        total = self.completed_steps() if count is None else count
        return [self.step_path(i) for i in range(total)]

    def remove_steps_from(self, step: int) -> None:
        """Drop step files at or after ``step`` (a resume restarts there) and temp leftovers."""
        if not self.steps_dir.is_dir():
            return
        for path in self.steps_dir.iterdir():
            match = _STEP_RE.match(path.name)
            if path.name.startswith(TEMP_PREFIX) or (match and int(match.group(1)) >= step):
                path.unlink(missing_ok=True)

    def content_hash(self, steps: int) -> str:
        """Hash of the pivots and the step files: the inversion's output hash."""
        files = [self.pivots_path, *self.step_files(steps)]
        return hash_files(files) if self.index is None else self.index.combined(files)

    def problem(self, recorded_hash: str | None, steps: int) -> str | None:
        """What is wrong with a finished inversion's files (None: exactly what was recorded),
        naming the first missing or changed file."""
        files = [self.pivots_path, *[self.step_path(i) for i in range(steps)]]
        missing = [f for f in files if not f.is_file()]
        if missing:
            return f"the files of inversion {self.folder.name[:12]}: {missing[0]} is missing"
        if recorded_hash is not None and self.content_hash(steps) == recorded_hash:
            if self.index is not None:
                self.index.remember(files)
            return None
        changed = self.index.changed(files) if self.index is not None else []
        which = ""
        if changed and self.index is not None:
            how = "is truncated" if self.index.shrunk(changed[0]) else "differs"
            which = f" ({changed[0].name} {how})"
        return (
            f"the files of inversion {self.folder.name[:12]} changed after vdir invert wrote "
            f"them{which}"
        )

    # info -------------------------------------------------------------------------------------
    def save_info(self, info: dict[str, Any]) -> None:
        atomic_write_json(self.info_path, {"format": FORMAT_VERSION, **info})

    # everything -------------------------------------------------------------------------------
    def load(self, recorded_hash: str | None = None) -> StoredInversion:
        """The whole inversion; raises InputError when it is missing or incomplete, and
        StaleError when its files no longer hash to ``recorded_hash`` (the manifest's)."""
        if not self.has_pivots():
            raise InputError(f"inversion in {self.folder} has no pivots", hint="run vdir invert")
        pivots, timesteps, key = self.load_pivots()
        found = self.problem(recorded_hash, len(timesteps)) if recorded_hash else None
        if found is not None:
            raise StaleError(found, hint="run vdir invert again")
        done = self.completed_steps(key)
        if done < len(timesteps):
            raise InputError(
                f"inversion {key[:12]} is incomplete ({done} of {len(timesteps)} steps)",
                hint="run vdir invert again to finish it",
            )
        steps = [self.load_step(i) for i in range(len(timesteps))]
        return StoredInversion.from_steps(key, timesteps, pivots, steps)


def _cpu_f32(tensor: torch.Tensor) -> torch.Tensor:
    import torch

    return tensor.detach().to(device="cpu", dtype=torch.float32).contiguous()


def _metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except Exception:  # a damaged file counts as missing
        return {}


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    except FileNotFoundError:
        raise InputError(f"{path} is missing", hint="run vdir invert") from None
    except Exception as exc:
        raise InputError(
            f"{path} is damaged ({exc})", hint="delete it and run vdir invert"
        ) from None
    return tensors, metadata
