"""What every stage of the toy training shares.

Settings are dataclasses whose fields are the command-line options (one source for the default,
the type and the help). Every random draw comes from ``(seed, stream, step)`` so a resumed run
sees the data and noise an uninterrupted one would. Checkpoints are written atomically; the CPU
time a stage spent is the process's own CPU time (honest on a machine shared with other jobs),
kept next to the wall-clock time.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch


def option(default: Any, help: str) -> Any:
    """A settings field that is also a command-line option (``--name-with-dashes``)."""
    return field(default=default, metadata={"help": help})


def add_options(parser: argparse.ArgumentParser, cls: type) -> None:
    """One ``--option`` per field of the settings dataclass ``cls``."""
    group = parser.add_argument_group(cls.__name__, (cls.__doc__ or "").split("\n")[0])
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        kind = type(f.default)
        help_text = f"{f.metadata.get('help', '')} (default: {f.default})".replace("%", "%%")
        group.add_argument(flag, dest=f.name, type=kind, default=f.default, help=help_text)


def settings_from(args: argparse.Namespace, cls: type) -> Any:
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})


@dataclass
class RunSettings:
    """How and where the stages run (none of this changes what they compute on the CPU)."""

    seed: int = option(0, "seeds every data draw, noise sample and initialisation")
    device: str = option("cpu", "cpu, cuda or auto (cuda when available)")
    precision: str = option("auto", "fp32, bf16 (autocast) or auto: bf16 on cuda, fp32 on cpu")
    threads: int = option(1, "torch CPU threads (1 on a CPU shared with other jobs)")
    ckpt_minutes: float = option(3.0, "checkpoint every this many minutes (and on Ctrl-C)")
    max_minutes: float = option(0.0, "stop this run after this many minutes, resumable (0: no cap)")
    log_every: int = option(50, "one progress line every this many steps")


class Runtime:
    """Device, precision and the run's wall-clock cap, resolved once from ``RunSettings``."""

    def __init__(self, settings: RunSettings):
        self.settings = settings
        self.device = resolve_device(settings.device)
        if settings.precision not in ("auto", "fp32", "bf16"):
            raise SystemExit("--precision must be fp32, bf16 or auto")
        self.bf16 = settings.precision == "bf16" or (
            settings.precision == "auto" and self.device.type == "cuda"
        )
        self.started = time.time()

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast (no GradScaler needed: bf16 has float32's exponent range)."""
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    def out_of_time(self) -> bool:
        cap = self.settings.max_minutes
        return cap > 0 and time.time() - self.started > cap * 60


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda"):
        raise SystemExit(f"--device must be cpu, cuda or auto, not {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available here")
    return torch.device(name)


def rng_for(seed: int, stream: int, step: int) -> np.random.Generator:
    """The data draws of one step of one stage."""
    return np.random.default_rng([seed, stream, step])


def torch_generator(seed: int, stream: int, step: int) -> torch.Generator:
    """Noise of one step of one stage, drawn on the CPU so every device sees the same noise."""
    return torch.Generator().manual_seed(seed * 1_000_003 + stream * 7919 + step)


def cosine_lr(step: int, total: int, base: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 10 % of ``base`` at ``total`` steps."""
    if step < warmup:
        return base * (step + 1) / warmup
    p = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))


class Ema:
    """Exponential moving average of some modules' parameters: the weights sampling and export
    use. The decay ramps up from 0 ((1 + n) / (10 + n)) so early averages do not hold the random
    initialisation."""

    def __init__(self, modules: dict[str, torch.nn.Module], decay: float):
        self.decay = decay
        self.updates = 0
        self.shadow = {
            f"{name}.{key}": p.detach().clone().float()
            for name, mod in modules.items()
            for key, p in mod.named_parameters()
        }

    @torch.no_grad()
    def update(self, modules: dict[str, torch.nn.Module]) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for name, mod in modules.items():
            for key, p in mod.named_parameters():
                self.shadow[f"{name}.{key}"].lerp_(p.detach().float(), 1 - d)

    def copy_to(self, modules: dict[str, torch.nn.Module]) -> None:
        copy_ema_weights(modules, self.state_dict())

    def to(self, device: torch.device) -> Ema:
        self.shadow = {k: v.to(device) for k, v in self.shadow.items()}
        return self

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "shadow": self.shadow}

    def load_state_dict(self, state: dict) -> None:
        self.updates = state["updates"]
        for k, v in state["shadow"].items():
            self.shadow[k].copy_(v)


@torch.no_grad()
def copy_ema_weights(modules: dict[str, torch.nn.Module], ema_state: dict) -> None:
    """Load the averaged weights of a saved ``Ema.state_dict()`` into ``modules``."""
    shadow = ema_state["shadow"]
    for name, mod in modules.items():
        for key, p in mod.named_parameters():
            p.copy_(shadow[f"{name}.{key}"])


class StageClock:
    """CPU seconds (this process's, all threads) and wall seconds a stage has spent, across runs."""

    def __init__(self, cpu: float = 0.0, wall: float = 0.0):
        self.cpu, self.wall = cpu, wall
        self._cpu0 = self._wall0 = 0.0

    def __enter__(self) -> StageClock:
        self._cpu0, self._wall0 = time.process_time(), time.time()
        self._running = True
        return self

    def __exit__(self, *exc) -> None:
        self.cpu += time.process_time() - self._cpu0
        self.wall += time.time() - self._wall0
        self._running = False

    def cpu_so_far(self) -> float:
        """CPU seconds including the ``with`` block that is running now."""
        running = getattr(self, "_running", False)
        return self.cpu + (time.process_time() - self._cpu0 if running else 0.0)

    def as_dict(self) -> dict[str, float]:
        return {"cpu_seconds": round(self.cpu, 1), "wall_seconds": round(self.wall, 1)}


def atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, mmap: bool = False) -> dict | None:
    """A checkpoint, or None. ``mmap``: map it instead of reading it (to read a step count)."""
    if not path.exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=False, mmap=mmap)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Checkpointer:
    """Calls ``save`` every ``minutes`` of wall-clock time; the loops also save on exit."""

    def __init__(self, minutes: float):
        self.every = minutes * 60
        self.last = time.time()

    def due(self) -> bool:
        if time.time() - self.last > self.every:
            self.last = time.time()
            return True
        return False


# ---------------------------------------------------------------------------------------------
# plotting (PIL only: no matplotlib here)
# ---------------------------------------------------------------------------------------------


def plot_losses(
    series: dict[str, list[float]], path: Path, title: str = "toy model training"
) -> None:
    """Log-scale loss curves (smoothed) side by side, one panel per series, as a PNG."""
    from PIL import Image, ImageDraw

    names = [k for k, v in series.items() if v]
    if not names:
        return
    pw, ph, pad = 360, 240, 44
    img = Image.new("RGB", (pw * len(names), ph + 30), "white")
    d = ImageDraw.Draw(img)
    d.text((8, 6), title, fill="black")
    for k, name in enumerate(names):
        y = np.clip(np.asarray(series[name], dtype=np.float64), 1e-8, None)
        win = max(1, len(y) // 50)
        sm = np.convolve(y, np.ones(win) / win, mode="valid") if len(y) > win else y
        ly = np.log10(sm)
        lo, hi = float(ly.min()), float(ly.max())
        if hi - lo < 1e-6:
            hi = lo + 1
        x0, y0 = k * pw + pad, 30
        w, h = pw - pad - 10, ph - 40
        d.rectangle([x0, y0, x0 + w, y0 + h], outline="black")
        for dec in range(math.floor(lo), math.ceil(hi) + 1):
            for m in (1, 2, 5):
                v = math.log10(m) + dec
                if lo <= v <= hi:
                    yy = y0 + h - (v - lo) / (hi - lo) * h
                    d.line([x0 - 4, yy, x0, yy], fill="black")
                    d.text((x0 - pad + 2, yy - 6), f"{m * 10.0**dec:.0e}", fill="black")
                    d.line([x0, yy, x0 + w, yy], fill=(225, 225, 225))
        pts = [
            (x0 + i / max(1, len(ly) - 1) * w, y0 + h - (v - lo) / (hi - lo) * h)
            for i, v in enumerate(ly)
        ]
        if len(pts) > 1:
            d.line(pts, fill=(200, 40, 40), width=2)
        d.text((x0 + 4, y0 + h + 4), f"{name}: {len(y)} steps, last {sm[-1]:.4f}", fill="black")
    tmp = path.with_suffix(".tmp.png")
    img.save(tmp)
    os.replace(tmp, path)
