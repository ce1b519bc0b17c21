"""Which device and number format the model runs in, and what to say when memory runs out.

Rules (also in docs/models.md):

* ``--device auto`` picks CUDA, then Apple MPS, then the CPU. Asking for a device that is not
  there is a usage error, never a silent fall-back: a run that was meant for the GPU and quietly
  takes a day on the CPU is worse than a clear refusal.
* ``--dtype auto`` is bf16 on CUDA when the card supports it (fp16 otherwise), fp16 on MPS and fp32
  on the CPU. Half precision on the CPU is refused: many CPU kernels have no fp16 path and bf16
  there is slower than fp32, so it never helps.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from videodirector_cli.errors import ResourceError, UsageError

if TYPE_CHECKING:
    import torch

DEVICE_NAMES = ("auto", "cpu", "cuda", "cuda:N", "mps")
DTYPE_ALIASES = {
    "auto": "auto",
    "fp32": "fp32",
    "float32": "fp32",
    "float": "fp32",
    "fp16": "fp16",
    "float16": "fp16",
    "half": "fp16",
    "bf16": "bf16",
    "bfloat16": "bf16",
}

DEFAULT_OOM_ADVICE = (
    "use --dtype bf16 or fp16 (not fp32), fewer frames (vdir init --frames), a smaller --size, "
    "or close other programs using the GPU"
)


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(name: str = "auto") -> torch.device:
    """Turn ``--device`` into a torch.device that exists on this machine."""
    import torch

    text = (name or "auto").strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "mps":
        if not _mps_available():
            raise UsageError(
                "--device mps: Apple's MPS backend is not available on this machine",
                hint="use --device auto or cpu",
            )
        return torch.device("mps")
    match = re.fullmatch(r"cuda(?::(\d+))?", text)
    if match:
        if not torch.cuda.is_available():
            build = (
                "a CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}"
            )
            raise UsageError(
                f"--device {name}: no CUDA GPU is available (torch {torch.__version__}, {build})",
                hint="use --device auto or cpu, or install a CUDA build of torch",
            )
        index = int(match.group(1)) if match.group(1) else None
        count = torch.cuda.device_count()
        if index is not None and index >= count:
            raise UsageError(
                f"--device {name}: this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1})",
                hint="pick an existing index",
            )
        return torch.device("cuda", index) if index is not None else torch.device("cuda")
    raise UsageError(
        f"--device {name!r} is not a device name", hint=f"use one of {', '.join(DEVICE_NAMES)}"
    )


def resolve_dtype(name: str, device: torch.device | str) -> torch.dtype:
    """Turn ``--dtype`` into a torch dtype suited to ``device`` (rules in the module docstring)."""
    import torch

    device = torch.device(device)
    key = DTYPE_ALIASES.get((name or "auto").strip().lower())
    if key is None:
        raise UsageError(
            f"--dtype {name!r} is not a number format", hint="use auto, bf16, fp16 or fp32"
        )
    if key == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device.type == "mps":
            return torch.float16
        return torch.float32
    if key == "fp32":
        return torch.float32
    if device.type == "cpu":
        raise UsageError(
            f"--dtype {key} on the CPU: half precision is slow or unsupported there",
            hint="use --dtype fp32 (or auto) on the CPU",
        )
    if key == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise UsageError(
            "--dtype bf16: this GPU does not support bfloat16", hint="use --dtype fp16"
        )
    return torch.bfloat16 if key == "bf16" else torch.float16


def dtype_name(dtype: torch.dtype) -> str:
    """The short name used in messages and identities (bf16, fp16, fp32)."""
    import torch

    return {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}.get(
        dtype, str(dtype).removeprefix("torch.")
    )


def is_out_of_memory(exc: BaseException) -> bool:
    """True for CUDA and MPS out-of-memory errors (torch raises several kinds)."""
    import torch

    oom_type = getattr(torch, "OutOfMemoryError", None) or getattr(
        torch.cuda, "OutOfMemoryError", None
    )
    if oom_type is not None and isinstance(exc, oom_type):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def raise_if_oom(exc: BaseException, advice: str | None = None) -> None:
    """Re-raise an out-of-memory error as a ResourceError with advice; do nothing otherwise.

    Frees the CUDA cache first so that the process (or a later attempt in it) starts clean.
    """
    if not is_out_of_memory(exc):
        return
    _free_cuda_cache()
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    raise ResourceError(
        f"out of GPU memory ({first_line[:160]})", hint=advice or DEFAULT_OOM_ADVICE
    ) from exc


@contextmanager
def oom_guard(advice: str | None = None) -> Iterator[None]:
    """Wrap a stage's GPU work: out-of-memory becomes one ResourceError line with advice."""
    try:
        yield
    except BaseException as exc:
        raise_if_oom(exc, advice)
        raise


def _free_cuda_cache() -> None:
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # freeing is best effort; the error we report matters more
        pass
