"""What every loading module shares: the parts being assembled, and one-line failures.

diffusers and transformers fail with tracebacks and log warnings users cannot act on; loading
code runs their calls inside ``loading()`` (one ModelError line naming the component) and
``quiet_libraries()``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from videodirector_cli.diffusion.devices import is_out_of_memory
from videodirector_cli.errors import ModelError, VdirError


@dataclass
class Parts:
    """Components as loaded (CPU, fp32 or their stored dtype), before assembly."""

    unet: Any  # UNetMotionModel, or UNet2DConditionModel that still needs an adapter
    vae: Any | None
    text_encoder: Any
    tokenizer: Any
    identity: dict[str, str] = field(default_factory=dict)
    scheduler_note: str = ""
    meaningless: bool = False


def read_config(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path} is not a readable JSON config ({first_line(exc)})") from exc
    if not isinstance(data, dict):
        raise ModelError(f"{path} is not a JSON object")
    return data


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def sample(names: list[str], shown: int = 3) -> str:
    """'a, b, c, ...' for messages that name a few of many keys or files."""
    head = ", ".join(names[:shown])
    return head + (", ..." if len(names) > shown else "")


@contextmanager
def loading(what: str, where: Path) -> Iterator[None]:
    """Turn a library's loading failure into one ModelError line naming the component."""
    try:
        yield
    except VdirError:
        raise
    except Exception as exc:
        if is_out_of_memory(exc):
            raise
        raise ModelError(
            f"could not load {what} from {where} ({type(exc).__name__}: {first_line(exc)})",
            hint="the files may be incomplete or not an SD1.5/AnimateDiff model; fetch them again",
        ) from exc


@contextmanager
def quiet_libraries() -> Iterator[None]:
    """diffusers/transformers log warnings and progress bars users cannot act on; mute them.

    What a user can act on (unused tensors in a weights file, say) vdir checks and reports itself.
    """
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    verbosity = (diffusers_logging.get_verbosity(), transformers_logging.get_verbosity())
    bars = transformers_logging.is_progress_bar_enabled()
    diffusers_logging.set_verbosity_error()
    transformers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(verbosity[0])
        transformers_logging.set_verbosity(verbosity[1])
        diffusers_logging.enable_progress_bar()
        if bars:
            transformers_logging.enable_progress_bar()
