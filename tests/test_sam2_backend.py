"""The SAM2 path on CPU, with the packaged sam2.1 tiny config and RANDOM weights.

With random weights the masks are meaningless: these tests check the plumbing (frames reach SAM2
without decord, prompts on any frame, tracking covers every frame, files and manifest written,
device honoured, weights located or refused clearly), never segmentation quality.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from _helpers_masks import make_project, moving_disk_frames, snapshot
from typer.testing import CliRunner

from videodirector_cli.cli.app import app
from videodirector_cli.errors import ModelError, UsageError
from videodirector_cli.masks import sam2_backend
from videodirector_cli.masks.shapes import Box, Point
from videodirector_cli.output import Output
from videodirector_cli.project.fingerprint import hash_files
from videodirector_cli.project.readers import read_project_masks
from videodirector_cli.project.store import Project
from videodirector_cli.settings.mask import MaskRequest
from videodirector_cli.stages.mask import run_mask

TEST_IMAGE_SIZE = 64
"""SAM2 normally works at 1024 px; 64 keeps a 4-frame CPU run to about a second."""


@pytest.fixture
def one_thread() -> Iterator[None]:
    """On a shared 2-core machine two torch threads per process thrash; one is ~5x faster here."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def empty_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def test_random_sam2_tracks_every_frame_from_a_middle_frame(
    one_thread: None, capsys: pytest.CaptureFixture[str]
) -> None:
    choice = sam2_backend.choose(sam2_backend.RANDOM, None, None, TEST_IMAGE_SIZE)
    weights = sam2_backend.locate_weights(choice)
    assert weights.checkpoint is None and weights.config == "configs/sam2.1/sam2.1_hiera_t.yaml"
    predictor = sam2_backend.build_predictor(weights, "cpu", image_size=choice.image_size)
    assert predictor.image_size == TEST_IMAGE_SIZE
    assert {p.device.type for p in predictor.parameters()} == {"cpu"}

    frames = moving_disk_frames(count=4, size=64)
    reported: list[int] = []
    masks = sam2_backend.segment_video(
        predictor,
        frames,
        [Point(30, 32), Point(5, 5, 0)],
        Box(15, 20, 45, 44),
        2,
        "cpu",
        reported.append,
    )
    assert masks.shape == (4, 64, 64) and masks.dtype == bool
    assert sorted(reported) == [0, 1, 2, 3], "forward from frame 2, then backward to frame 0"
    assert reported[:2] == [2, 3]
    # Meaningless masks, but real output of the network: not constant.
    assert 0 < masks.mean() < 1
    # SAM2's own tqdm bars and per-frame warnings are kept off stderr, and put back afterwards.
    assert "propagate in video" not in capsys.readouterr().err
    import sam2.sam2_video_predictor as predictor_module
    from tqdm import tqdm

    assert predictor_module.tqdm is tqdm


def test_random_sam2_stage_writes_masks_and_manifest(tmp_path: Path, one_thread: None) -> None:
    project = make_project(tmp_path / "proj", moving_disk_frames(count=4, size=64))
    request = MaskRequest(
        points=[Point(20, 32)], sam2_size="random", sam2_image_size=TEST_IMAGE_SIZE, device="cpu"
    )
    outcome = run_mask(project, request, Output(mode="quiet"))
    result = outcome.data
    assert result["method"] == "sam2" and result["frames"] == 4 and result["ellipse"] is True

    reopened = Project.open(project.paths.root)
    record = reopened.manifest.masks
    assert record is not None and record.status == "done"
    assert record.params.sam2 == {
        "weights": "random",
        "config": "configs/sam2.1/sam2.1_hiera_t.yaml",
        "image_size": TEST_IMAGE_SIZE,
    }
    assert record.params.points == [(20.0, 32.0, 1)] and record.params.frame == 0
    assert record.params.device == "cpu"
    assert record.outputs["masks"] == hash_files(project.paths.mask_files(4))
    masks = read_project_masks(reopened)
    assert masks is not None and masks.shape == (4, 64, 64)
    assert all(masks[i].any() for i in range(4)), "a mask on every frame"
    assert project.paths.mask_sheet.is_file() and project.paths.mask_overlay_video.is_file()


def test_missing_hub_weights_say_how_to_fetch_them(tmp_path: Path, empty_hub_cache: Path) -> None:
    project = make_project(tmp_path / "proj", moving_disk_frames(count=4, size=64))
    before = snapshot(project.paths.root)
    result = CliRunner().invoke(
        app, ["mask", "--point", "20,30", "--sam2", "tiny", "-p", str(project.paths.root)]
    )
    assert result.exit_code == ModelError.exit_code, result.output
    assert "SAM2 weights facebook/sam2.1-hiera-tiny are not available locally" in result.output
    assert "hf download facebook/sam2.1-hiera-tiny" in result.output
    assert "--from DIR" in result.output and "--no-sam2" in result.output
    assert snapshot(project.paths.root) == before


def _fake_cached_checkpoint(cache: Path, model_id: str, filename: str, data: bytes) -> Path:
    repo = cache / ("models--" + model_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    snapshot_dir = repo / "snapshots" / "abc123"
    snapshot_dir.mkdir(parents=True)
    (snapshot_dir / filename).write_bytes(data)
    return snapshot_dir / filename


def test_cached_hub_weights_are_found_and_bad_files_refused(empty_hub_cache: Path) -> None:
    path = _fake_cached_checkpoint(
        empty_hub_cache, "facebook/sam2.1-hiera-small", "sam2.1_hiera_small.pt", b"not a checkpoint"
    )
    weights = sam2_backend.locate_weights(sam2_backend.choose("small", None, None))
    assert weights.checkpoint == path and weights.config == "configs/sam2.1/sam2.1_hiera_s.yaml"
    with pytest.raises(ModelError, match="cannot load SAM2 checkpoint"):
        sam2_backend.build_predictor(weights, "cpu")


def test_local_checkpoint_options(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        sam2_backend.locate_weights(sam2_backend.choose(None, tmp_path / "none.pt", None))
    odd = tmp_path / "my_sam.pt"
    odd.write_bytes(b"x")
    with pytest.raises(UsageError, match="cannot tell which SAM2 config"):
        sam2_backend.locate_weights(sam2_backend.choose(None, odd, None))
    for name in ("sam2.1_hiera_l", "sam2.1_hiera_l.yaml", "configs/sam2.1/sam2.1_hiera_l.yaml"):
        weights = sam2_backend.locate_weights(sam2_backend.choose(None, odd, name))
        assert weights.config == "configs/sam2.1/sam2.1_hiera_l.yaml"
    with pytest.raises(UsageError, match="not a SAM2 config"):
        sam2_backend.locate_weights(sam2_backend.choose(None, odd, "sam3_hiera_x"))
    named = tmp_path / "sam2_hiera_base_plus.pt"
    named.write_bytes(b"x")
    assert (
        sam2_backend.locate_weights(sam2_backend.choose(None, named, None)).config
        == "configs/sam2/sam2_hiera_b+.yaml"
    )
    with pytest.raises(UsageError, match="cannot be used together"):
        sam2_backend.choose("tiny", named, None)


def test_device_choice_never_assumes_cuda() -> None:
    import torch

    auto = sam2_backend.resolve_device("auto")
    assert auto.startswith("cuda") == torch.cuda.is_available()
    assert sam2_backend.resolve_device("cpu") == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="cuda"):
            sam2_backend.resolve_device("cuda")
    with pytest.raises(UsageError):
        sam2_backend.resolve_device("tpu")


def test_importing_the_cli_does_not_import_sam2() -> None:
    import subprocess

    code = "import sys; import videodirector_cli.cli.app; print('sam2' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", "vdir --help must stay fast: sam2 is imported lazily"
