"""Decoding: formats, rotation, bit depth, frame choice, variable frame rate, and bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _helpers_media import CLIPS, decode_all, make_video, read_code, upright

from videodirector_cli.errors import InputError, UsageError
from videodirector_cli.media.decode import FrameChoice, Start, decode, parse_start, probe
from videodirector_cli.media.fit import crop_box, fit_frame, pad_placement, parse_size

FORMATS = {
    "h264 mp4": dict(),
    "h264 10-bit": dict(pix_fmt="yuv420p10le"),
    "odd size ffv1 mkv": dict(width=77, height=51, codec="ffv1", pix_fmt="yuv444p", fmt="matroska"),
    "vp9 webm": dict(codec="libvpx-vp9", fmt="webm"),
    "mpeg4 mov": dict(codec="mpeg4", fmt="mov"),
    "gif": dict(codec="gif", pix_fmt="rgb8", fps=10),
    "with audio": dict(audio=True),
}


@pytest.mark.parametrize("name", list(FORMATS))
def test_every_format_decodes_every_frame_in_order(tmp_path: Path, name: str) -> None:
    options = FORMATS[name]
    suffix = {"matroska": ".mkv", "webm": ".webm", "mov": ".mov"}.get(options.get("fmt"), ".mp4")
    if options.get("codec") == "gif":
        suffix = ".gif"
    video = make_video(tmp_path / f"clip{suffix}", frames=12, **options)
    clip = decode(video, FrameChoice(count=12))
    assert clip.frames.dtype == np.uint8
    assert clip.frames.shape == (12, options.get("height", 64), options.get("width", 64), 3)
    assert [read_code(f) for f in clip.frames] == list(range(12))
    assert all(upright(f) for f in clip.frames)
    fps = options.get("fps", 24)
    assert clip.info.fps == pytest.approx(fps)
    assert clip.times == pytest.approx([i / fps for i in range(12)], abs=2e-3)


def test_ten_bit_source_is_reported_and_converted_to_8_bit(tmp_path: Path) -> None:
    video = make_video(tmp_path / "deep.mp4", frames=4, pix_fmt="yuv420p10le")
    clip = decode(video, FrameChoice(count=4))
    assert clip.info.pix_fmt == "yuv420p10le"
    assert clip.frames.dtype == np.uint8
    assert clip.frames.max() > 200 and clip.frames.min() < 40  # full range survived the shift


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_rotation_metadata_is_applied(tmp_path: Path, rotation: int) -> None:
    video = make_video(tmp_path / "rot.mp4", frames=6, width=96, height=64, rotation=rotation)
    clip = decode(video, FrameChoice(count=6))
    assert clip.frames.shape[1:3] == (64, 96)  # upright height x width, not the coded 96 x 64
    assert (clip.info.width, clip.info.height) == (96, 64)
    assert clip.info.rotation % 360 == rotation % 360
    assert all(upright(f) for f in clip.frames)
    assert [read_code(f) for f in clip.frames] == list(range(6))


VFR_TIMES = [0.0, 0.03, 0.09, 0.12, 0.18, 0.30, 0.33, 0.36]


def test_variable_frame_rate_keeps_real_times(tmp_path: Path) -> None:
    video = make_video(tmp_path / "vfr.mp4", frames=8, times=VFR_TIMES, audio=True)
    clip = decode(video, FrameChoice(count=8))
    assert clip.times == pytest.approx(VFR_TIMES, abs=1e-3)
    assert [read_code(f) for f in clip.frames] == list(range(8))


def test_fps_sampling_takes_the_frame_on_screen(tmp_path: Path) -> None:
    video = make_video(tmp_path / "vfr.mp4", frames=8, times=VFR_TIMES)
    clip = decode(video, FrameChoice(count=6, fps=12.5))
    # targets 0, .08, .16, .24, .32, .40 s -> frames shown then (0.36 stays up ~1/avg fps)
    assert clip.indices == [0, 1, 3, 4, 5, 7]
    assert [read_code(f) for f in clip.frames] == clip.indices


def test_start_index_and_stride(tmp_path: Path) -> None:
    video = make_video(tmp_path / "a.mp4", frames=20)
    clip = decode(video, FrameChoice(count=4, start=parse_start("3"), stride=5))
    assert clip.indices == [3, 8, 13, 18]
    assert [read_code(f) for f in clip.frames] == [3, 8, 13, 18]
    assert clip.times == pytest.approx([i / 24 for i in clip.indices], abs=1e-3)


def test_start_seconds_picks_the_frame_shown_then(tmp_path: Path) -> None:
    video = make_video(tmp_path / "a.mp4", frames=20)
    assert decode(video, FrameChoice(count=2, start=parse_start("0.5s"))).indices == [12, 13]
    # 0.52 s falls between frame 12 (0.5) and 13 (0.542): frame 12 is on screen
    assert decode(video, FrameChoice(count=1, start=parse_start("0.52"))).indices == [12]


def test_parse_start() -> None:
    assert parse_start("12") == Start(index=12)
    assert parse_start("1.5s") == Start(seconds=1.5)
    assert parse_start("2s") == Start(seconds=2.0)
    assert parse_start("0.5") == Start(seconds=0.5)
    assert parse_start(None) == Start(index=0)
    for bad in ("-1", "abc", "1.5m", ""):
        with pytest.raises(UsageError):
            parse_start(bad)


def test_frame_choice_rejects_nonsense() -> None:
    for kwargs in (dict(count=0), dict(stride=0), dict(fps=0.0), dict(fps=float("nan"))):
        with pytest.raises(UsageError):
            FrameChoice(**kwargs)


def test_too_few_frames_says_how_many_and_what_fits(tmp_path: Path) -> None:
    video = make_video(tmp_path / "short.mp4", frames=10)
    with pytest.raises(InputError) as caught:
        decode(video, FrameChoice(count=16))
    assert "has 10 decodable frames" in str(caught.value)
    assert "--frames 10" in str(caught.value)
    with pytest.raises(InputError) as caught:
        decode(video, FrameChoice(count=4, stride=4))
    assert "--frames 3" in str(caught.value) and "--stride 3" in str(caught.value)
    with pytest.raises(InputError, match="past the end"):
        decode(video, FrameChoice(count=1, start=parse_start("10")))
    with pytest.raises(InputError, match="--fps"):
        decode(video, FrameChoice(count=8, fps=12))


def test_missing_and_non_video_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        decode(tmp_path / "nope.mp4", FrameChoice())
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n")
    with pytest.raises(InputError, match="not a video ffmpeg can read"):
        decode(text, FrameChoice())
    with pytest.raises(InputError, match="folder"):
        decode(tmp_path, FrameChoice())


def test_truncated_files(tmp_path: Path) -> None:
    whole = make_video(tmp_path / "whole.mp4", frames=40, noise=True, faststart=True)
    data = whole.read_bytes()
    half = tmp_path / "half.mp4"
    half.write_bytes(data[: len(data) // 2])
    # The first frames are intact and usable...
    assert decode(half, FrameChoice(count=5)).indices == [0, 1, 2, 3, 4]
    # ...but asking for all of them explains what happened.
    with pytest.raises(InputError, match="truncated"):
        decode(half, FrameChoice(count=40))
    # moov at the end (the default): cutting the file loses the index of everything
    tail = make_video(tmp_path / "tail.mp4", frames=10, noise=True)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(tail.read_bytes()[: tail.stat().st_size // 2])
    with pytest.raises(InputError):
        decode(cut, FrameChoice(count=4))


def test_no_decodable_frame(tmp_path: Path) -> None:
    whole = make_video(tmp_path / "whole.mp4", frames=10, noise=True, faststart=True)
    data = whole.read_bytes()
    header_only = tmp_path / "header_only.mp4"
    header_only.write_bytes(data[: data.find(b"mdat") + 4])
    with pytest.raises(InputError, match="no decodable video frame"):
        decode(header_only, FrameChoice(count=1))


def test_audio_only_file_has_no_video(tmp_path: Path) -> None:
    import av
    from _helpers_media import _add_audio

    path = tmp_path / "sound.mp4"
    with av.open(str(path), "w") as container:
        _add_audio(container, container.add_stream("aac", rate=44100), seconds=0.5)
    with pytest.raises(InputError, match="no video stream"):
        decode(path, FrameChoice(count=1))


def test_real_clip_matches_a_plain_decode() -> None:
    video = CLIPS / "bear" / "bear.mp4"
    clip = decode(video, FrameChoice(count=16))
    reference, times, fps = decode_all(video)
    assert np.array_equal(clip.frames, reference)
    assert clip.times == pytest.approx(times, abs=1e-6)
    assert probe(video).fps == pytest.approx(fps) == 24


# ---- fit ----------------------------------------------------------------------------------------


def test_parse_size() -> None:
    assert parse_size("512") == (512, 512)
    assert parse_size("768x432") == (768, 432)
    assert parse_size(" 256X128 ") == (256, 128)
    for bad, why in [
        ("500", "multiple of 8"),
        ("768x430", "multiple of 8"),
        ("0", "outside"),
        ("56", "outside"),
        ("100000", "outside"),
        ("big", "not a size"),
        ("-512", "not a size"),
        ("512x", "not a size"),
    ]:
        with pytest.raises(UsageError, match=why):
            parse_size(bad)


def test_fit_geometry() -> None:
    assert crop_box(1920, 1080, (512, 512)) == (420.0, 0.0, 1500.0, 1080.0)
    assert crop_box(1080, 1920, (512, 512)) == (0.0, 420.0, 1080.0, 1500.0)
    assert pad_placement(1920, 1080, (512, 512)) == (0, 112, 512, 288)


def test_fit_modes_on_a_wide_frame() -> None:
    frame = np.full((100, 200, 3), 200, dtype=np.uint8)
    frame[:, :50] = 0  # a dark left quarter: cropped away by crop, kept by pad and stretch
    cropped = fit_frame(frame, (64, 64), "crop")
    padded = fit_frame(frame, (64, 64), "pad")
    stretched = fit_frame(frame, (64, 64), "stretch")
    assert cropped.shape == padded.shape == stretched.shape == (64, 64, 3)
    assert cropped.min() > 150
    assert padded[:10].max() == 0 and padded[-10:].max() == 0  # black bars top and bottom
    assert padded[32, 5].max() < 30 and padded[32, 40].min() > 150
    assert stretched[:, :10].max() < 30 and stretched[:, 30:].min() > 150
    same = np.zeros((64, 64, 3), dtype=np.uint8)
    assert fit_frame(same, (64, 64), "crop") is same  # the right size is never resampled
