"""SAM2 video segmentation: prompts on one frame, a mask on every frame.

Weights come from the local Hugging Face cache (hub ids facebook/sam2.1-hiera-*), from a local
checkpoint file, or, for tests only, are random ("random": the masks mean nothing). The device is
always passed explicitly: SAM2's own default is CUDA even on machines without it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from videodirector_cli.errors import ModelError, UsageError
from videodirector_cli.masks.shapes import Box, Point

SAM2_SIZES = {
    "tiny": "facebook/sam2.1-hiera-tiny",
    "small": "facebook/sam2.1-hiera-small",
    "base-plus": "facebook/sam2.1-hiera-base-plus",
    "large": "facebook/sam2.1-hiera-large",
}
RANDOM = "random"
"""Test-only choice: the packaged sam2.1 tiny config with random weights."""
RANDOM_CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"
RANDOM_IMAGE_SIZE = 256
DEFAULT_SIZE = "tiny"
_OFFLINE_VALUES = ("1", "on", "yes", "true")


@dataclass(frozen=True)
class Sam2Choice:
    """Which SAM2 to run: a hub size, a local checkpoint, or random weights (tests)."""

    size: str = DEFAULT_SIZE
    checkpoint: Path | None = None
    config: str | None = None
    image_size: int | None = None
    """Only with random weights: a smaller input size keeps CPU tests fast."""

    @property
    def is_random(self) -> bool:
        return self.checkpoint is None and self.size == RANDOM

    def describe(self) -> dict[str, Any]:
        """What the manifest records about the model."""
        if self.checkpoint is not None:
            return {"checkpoint": str(self.checkpoint), "config": self.config}
        if self.is_random:
            return {"weights": "random", "config": RANDOM_CONFIG, "image_size": self.image_size}
        return {"model": SAM2_SIZES[self.size]}


@dataclass(frozen=True)
class Sam2Weights:
    """Resolved before any work: a config name and a checkpoint path (None = random)."""

    config: str
    checkpoint: Path | None
    label: str


def choose(
    size: str | None, checkpoint: Path | None, config: str | None, image_size: int | None = None
) -> Sam2Choice:
    """Check the --sam2 / --sam2-checkpoint / --sam2-config combination."""
    if checkpoint is not None:
        if size is not None:
            raise UsageError("--sam2 and --sam2-checkpoint cannot be used together")
        return Sam2Choice(size="", checkpoint=Path(checkpoint).expanduser(), config=config)
    if config is not None:
        raise UsageError("--sam2-config needs --sam2-checkpoint FILE")
    size = size or DEFAULT_SIZE
    if size != RANDOM and size not in SAM2_SIZES:
        raise UsageError(
            f"--sam2 {size!r} is not one of: {', '.join(SAM2_SIZES)}",
            hint="or give a local file with --sam2-checkpoint FILE",
        )
    if size == RANDOM:
        return Sam2Choice(size=size, image_size=image_size or RANDOM_IMAGE_SIZE)
    return Sam2Choice(size=size)


def missing_weights_error(model_id: str, reason: str = "") -> ModelError:
    from sam2.build_sam import HF_MODEL_ID_TO_FILENAMES

    filename = HF_MODEL_ID_TO_FILENAMES[model_id][1]
    detail = f" ({reason})" if reason else ""
    return ModelError(
        f"SAM2 weights {model_id} are not available locally{detail}",
        hint=f"fetch them with: hf download {model_id} {filename} — or import masks with "
        "--from DIR, or use --box X0,Y0,X1,Y1 --no-sam2",
    )


def _hub_offline() -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _OFFLINE_VALUES:
        return True
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _cached_hub_file(model_id: str, filename: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(model_id, filename)
    return Path(found) if isinstance(found, str) and Path(found).is_file() else None


def _normalise_config(name: str) -> str:
    """'sam2.1_hiera_t', 'sam2.1_hiera_t.yaml' or 'configs/sam2.1/sam2.1_hiera_t.yaml'."""
    import sam2

    stem = Path(name).name
    if not stem.endswith(".yaml"):
        stem += ".yaml"
    family = "sam2.1" if stem.startswith("sam2.1") else "sam2"
    full = f"configs/{family}/{stem}"
    package_dir = Path(sam2.__file__).parent
    if not (package_dir / full).is_file():
        known = sorted(p.stem for p in (package_dir / "configs").glob("sam2*/sam2*_hiera_*.yaml"))
        raise UsageError(
            f"--sam2-config {name!r} is not a SAM2 config shipped with the sam2 package",
            hint=f"one of: {', '.join(known)}",
        )
    return full


def _config_for_checkpoint(checkpoint: Path) -> str | None:
    from sam2.build_sam import HF_MODEL_ID_TO_FILENAMES

    for config, filename in HF_MODEL_ID_TO_FILENAMES.values():
        if checkpoint.name == filename:
            return config
    return None


def locate_weights(choice: Sam2Choice, info: Callable[[str], None] | None = None) -> Sam2Weights:
    """Find the config and checkpoint without building anything; ModelError if missing."""
    if choice.is_random:
        return Sam2Weights(RANDOM_CONFIG, None, "random weights (masks are meaningless)")
    if choice.checkpoint is not None:
        checkpoint = choice.checkpoint
        if not checkpoint.is_file():
            raise ModelError(
                f"SAM2 checkpoint {checkpoint} does not exist",
                hint="give the path of a .pt file such as sam2.1_hiera_tiny.pt",
            )
        if choice.config is not None:
            config = _normalise_config(choice.config)
        else:
            inferred = _config_for_checkpoint(checkpoint)
            if inferred is None:
                raise UsageError(
                    f"cannot tell which SAM2 config fits {checkpoint.name}",
                    hint="pass --sam2-config, e.g. sam2.1_hiera_t for a tiny SAM2.1 checkpoint",
                )
            config = inferred
        return Sam2Weights(config, checkpoint, str(checkpoint))
    from sam2.build_sam import HF_MODEL_ID_TO_FILENAMES

    model_id = SAM2_SIZES[choice.size]
    config, filename = HF_MODEL_ID_TO_FILENAMES[model_id]
    cached = _cached_hub_file(model_id, filename)
    if cached is not None:
        return Sam2Weights(config, cached, model_id)
    if _hub_offline():
        raise missing_weights_error(model_id, "HF_HUB_OFFLINE is set")
    if info is not None:
        info(f"fetching {model_id} ({filename}) from the Hugging Face hub")
    from huggingface_hub import hf_hub_download

    try:
        downloaded = hf_hub_download(repo_id=model_id, filename=filename)
    except Exception as exc:
        raise missing_weights_error(model_id, f"download failed: {type(exc).__name__}") from None
    return Sam2Weights(config, Path(downloaded), model_id)


def resolve_device(name: str) -> str:
    """'auto' -> cuda, then mps, then cpu; an explicit device that is absent is a UsageError."""
    from videodirector_cli.diffusion.devices import resolve_device as resolve_torch_device

    return str(resolve_torch_device(name))


def build_predictor(weights: Sam2Weights, device: str, image_size: int | None = None) -> Any:
    """A SAM2VideoPredictor on ``device`` (random weights seeded, so tests are repeatable)."""
    import torch
    from sam2.build_sam import build_sam2_video_predictor

    overrides = [f"++model.image_size={image_size}"] if image_size else []
    try:
        if weights.checkpoint is None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                return build_sam2_video_predictor(
                    weights.config, None, device=device, hydra_overrides_extra=overrides
                )
        return build_sam2_video_predictor(
            weights.config, str(weights.checkpoint), device=device, hydra_overrides_extra=overrides
        )
    except Exception as exc:  # torch.load and load_state_dict fail in many ways on bad files
        if weights.checkpoint is None:
            raise
        raise ModelError(
            f"cannot load SAM2 checkpoint {weights.checkpoint} with config {weights.config}"
            f" ({type(exc).__name__}{': ' + str(exc).splitlines()[0] if str(exc) else ''})",
            hint="check that the file is a SAM2 checkpoint and that --sam2-config matches its size",
        ) from None


@contextlib.contextmanager
def _quiet_sam2() -> Iterator[None]:
    """SAM2 draws its own tqdm bars and warns per frame when its CUDA extension is absent.

    vdir shows one bar of its own and keeps stderr clean for --json and --quiet, so silence both
    for the duration of the call, then put everything back.
    """
    import warnings

    import sam2.sam2_video_predictor as predictor_module
    import sam2.utils.misc as misc_module

    saved = predictor_module.tqdm, misc_module.tqdm
    silent = functools.partial(saved[0], disable=True)
    predictor_module.tqdm = silent
    misc_module.tqdm = silent
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"(?s).*Skipping the post-processing step")
            warnings.filterwarnings("ignore", message=r"(?s).*cannot import name '_C'")
            yield
    finally:
        predictor_module.tqdm, misc_module.tqdm = saved


def _write_jpeg_folder(frames: np.ndarray, folder: Path) -> None:
    """SAM2's init_state reads a folder of <int>.jpg files; this avoids its decord mp4 path."""
    from PIL import Image

    for index, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{index:05d}.jpg", quality=95, subsampling=0)


def _precision(device: str) -> contextlib.AbstractContextManager[Any]:
    import torch

    if device.startswith("cuda") and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def segment_video(
    predictor: Any,
    frames: np.ndarray,
    points: Sequence[Point],
    box: Box | None,
    frame: int,
    device: str,
    on_frame: Callable[[int], None] | None = None,
) -> np.ndarray:
    """(F, H, W) bool: the prompted object on every frame (logits > 0).

    Tracks forward from the prompted frame, then backward when it is not the first one.
    """
    import torch

    count, height, width, _ = frames.shape
    masks = np.zeros((count, height, width), dtype=bool)
    seen: set[int] = set()
    prompt: dict[str, Any] = {}
    if points:
        prompt["points"] = [[p.x, p.y] for p in points]
        prompt["labels"] = [p.label for p in points]
    if box is not None:
        prompt["box"] = box.as_list()
    with (
        tempfile.TemporaryDirectory(prefix="vdir-sam2-") as folder,
        _quiet_sam2(),
        torch.inference_mode(),
        _precision(device),
    ):
        _write_jpeg_folder(frames, Path(folder))
        state = predictor.init_state(video_path=folder, offload_video_to_cpu=device == "cpu")
        predictor.add_new_points_or_box(state, frame_idx=frame, obj_id=1, **prompt)
        for reverse in (False, True):
            if reverse and frame == 0:
                break
            for index, _, logits in predictor.propagate_in_video(
                state, start_frame_idx=frame, reverse=reverse
            ):
                masks[index] = (logits[0, 0].float() > 0).cpu().numpy()
                if index not in seen:
                    seen.add(index)
                    if on_frame is not None:
                        on_frame(index)
    return masks
