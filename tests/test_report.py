"""`vdir report`: the page holds every clip, edit, number and stale item; it plays in headless
Chromium from a file:// URL (videos advance, no console errors, the screenshot shows them)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from _helpers_browser import Browser, screenshot
from _helpers_project import EDITED_NAME, copy_project
from PIL import Image
from typer.testing import CliRunner

from videodirector_cli.cli.app import app
from videodirector_cli.project.store import Project


def _vdir(root: Path, *args: str):
    return CliRunner().invoke(app, [args[0], "--project", str(root), *args[1:]])


@pytest.fixture(scope="module")
def reported(edited_project, tmp_path_factory):
    """A copy of the edited project with its report written, and the --json answer."""
    root = copy_project(edited_project.root, tmp_path_factory.mktemp("report"))
    project = Project.open(root)
    with project.writing("test"):  # what a real `vdir invert` records (the fixture's is made up)
        record = project.manifest.inversions[project.manifest.current_inversion]
        record.metrics["losses"] = [2e-3, 4e-4, 9e-5]
        record.metrics["report"] = {"optimised": {"psnr": 27.5}, "plain_ddim": {"psnr": 19.25}}
        project.save()
    result = _vdir(root, "report", "--json")
    assert result.exit_code == 0, result.output
    return root, json.loads(result.stdout)


def test_page_names_every_clip_edit_and_number_and_needs_no_network(reported):
    root, data = reported
    page = root / "report" / "index.html"
    assert Path(data["report"]) == page and page.is_file()
    html = page.read_text(encoding="utf-8")
    assert data["videos"] == ["source.mp4", "mask.mp4", f"edit-{EDITED_NAME}.mp4"]
    for video in data["videos"]:
        assert (root / "report" / "media" / video).stat().st_size > 0
        assert f'src="media/{video}"' in html
    record = Project.open(root).manifest.edits[EDITED_NAME]
    assert record.params.prompt in html
    numbers = data["edits"][EDITED_NAME]["eval"]
    assert numbers["background_psnr"] is not None
    assert f"{numbers['background_psnr']:.2f} dB" in html  # the eval number is on the page
    assert "<polyline" in html and "log scale" in html  # the inversion's loss plot
    assert "27.50 dB" in html and "19.25 dB" in html  # its reconstruction PSNR
    assert not re.search(r"(src|href)=\"(https?:)?//", html)  # nothing fetched from a network
    assert data["stale"] == [] and "every stage is up to date" in html


def test_prompts_are_text_not_markup(edited_project, tmp_path):
    root = copy_project(edited_project.root, tmp_path)
    project = Project.open(root)
    with project.writing("test"):
        project.manifest.prompt = "a <script>alert(1)</script> bear"
        project.save()
    assert _vdir(root, "report").exit_code == 0
    html = (root / "report" / "index.html").read_text(encoding="utf-8")
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html


def test_a_changed_edit_is_listed_as_damaged_and_not_shown(edited_project, tmp_path):
    root = copy_project(edited_project.root, tmp_path)
    frame = sorted((root / "edits" / EDITED_NAME / "frames").iterdir())[0]
    frame.write_bytes(frame.read_bytes()[:-10])  # truncated by hand
    result = _vdir(root, "report", "--out", str(tmp_path / "look.html"), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["videos"] == ["source.mp4", "mask.mp4"]
    assert data["edits"][EDITED_NAME]["state"] == "damaged"
    assert any(row["key"] == EDITED_NAME for row in data["stale"])
    assert (tmp_path / "look_media" / "source.mp4").is_file()
    assert "damaged" in (tmp_path / "look.html").read_text(encoding="utf-8")


def test_report_runs_while_another_process_holds_the_lock(edited_project, tmp_path):
    root = copy_project(edited_project.root, tmp_path)
    with Project.open(root).writing("edit"):  # an edit running elsewhere
        result = _vdir(root, "report")
    assert result.exit_code == 0, result.output


def test_bad_out_is_a_usage_error_and_writes_nothing(edited_project, tmp_path):
    root = copy_project(edited_project.root, tmp_path)
    result = _vdir(root, "report", "--out", str(tmp_path / "page.txt"))
    assert result.exit_code == 2 and "must end in .html" in result.output
    assert not (root / "report").exists()


# ----------------------------------------------------------------------------- in a browser

PLAY_AND_MEASURE = """(async () => {
  const videos = Array.from(document.querySelectorAll("video.clip"));
  const sleep = (ms) => new Promise((done) => setTimeout(done, ms));
  const played = (v) => Array.from({length: v.played.length}, (_, i) => v.played.end(i) - v.played.start(i))
    .reduce((a, b) => a + b, 0);
  const deadline = performance.now() + 45000;
  while (videos.some((v) => v.readyState < 2 && !v.error) && performance.now() < deadline) await sleep(50);
  document.getElementById("play").click();
  while (videos.some((v) => played(v) < 0.5 && !v.error) && performance.now() < deadline) await sleep(50);
  document.getElementById("play").click();  // pause, so the positions can be compared
  await sleep(200);
  return {
    played: videos.map(played),
    times: videos.map((v) => v.currentTime),
    durations: videos.map((v) => v.duration),
    paused: videos.map((v) => v.paused),
    ready: videos.map((v) => [v.readyState, v.networkState]),
    errors: videos.filter((v) => v.error).map((v) => v.id + ": media error " + v.error.code),
    label: document.getElementById("frame-label").textContent,
  };
})()"""


def test_videos_play_in_sync_in_headless_chromium_without_errors(reported):
    root, _ = reported
    page = root / "report" / "index.html"
    with Browser() as chromium:
        chromium.open(page.as_uri())
        probe = chromium.evaluate(PLAY_AND_MEASURE)
        errors = chromium.page_errors()
    assert probe["errors"] == [] and errors == []
    assert len(probe["played"]) == 3
    assert min(probe["played"]) >= 0.5, probe  # every video played after one click on Play
    assert all(probe["paused"])  # and a second click paused them all
    lead, duration = probe["times"][0], probe["durations"][0]
    for time in probe["times"][1:]:  # they stay together (positions compared around the loop)
        gap = abs(time - lead) % duration
        assert min(gap, duration - gap) < 0.25, probe
    assert re.fullmatch(r"frame \d+ / \d+", probe["label"]), probe


def test_screenshot_shows_the_videos(reported, tmp_path):
    root, _ = reported
    shot = tmp_path / "shot.png"
    messages = screenshot(root / "report" / "index.html", shot)
    assert shot.is_file(), messages[-2000:]
    image = np.asarray(Image.open(shot).convert("RGB")).astype(np.int16)
    # the players' row: the first video's box is not the page's flat background
    video_box = image[110:350, 25:270]
    assert video_box.std() > 10, "the screenshot shows no video content"
    assert len(np.unique(video_box.reshape(-1, 3), axis=0)) > 50
