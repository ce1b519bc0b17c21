"""`vdir report`: the page holds every clip, edit, number and stale item; it plays in headless
Chromium from a file:// URL (videos advance, no console errors, the screenshot shows them)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from _helpers_project import EDITED_NAME, copy_project
from PIL import Image
from typer.testing import CliRunner

from videodirector_cli.cli.app import app
from videodirector_cli.project.store import Project

BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome")


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

PROBE = """<script>
window.__errors = [];
window.addEventListener("error", (e) => window.__errors.push(String(e.message || e)), true);
const original = console.error;
console.error = (...args) => { window.__errors.push(args.join(" ")); original(...args); };
window.addEventListener("load", () => {
  document.getElementById("play").click();
  setTimeout(() => {
    const videos = Array.from(document.querySelectorAll("video"));
    const out = document.createElement("pre");
    out.id = "probe";
    out.textContent = JSON.stringify({
      times: videos.map((v) => v.currentTime),
      errors: window.__errors.concat(videos.filter((v) => v.error).map((v) => "video " + v.error.code)),
      label: document.getElementById("frame-label").textContent,
    });
    document.body.appendChild(out);
  }, 1500);
});
</script>"""


def _browser() -> str:
    for name in BROWSER_NAMES:
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("the report's browser tests need Chromium: apt-get install chromium (.ci/run does)")


def _chromium(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            _browser(),
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--autoplay-policy=no-user-gesture-required",
            "--virtual-time-budget=5000",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_videos_play_in_sync_in_headless_chromium_without_errors(reported, tmp_path):
    root, _ = reported
    page = root / "report" / "index.html"
    probed = page.with_name("probed.html")  # the page as shipped, with the test's probe added
    probed.write_text(
        page.read_text(encoding="utf-8").replace("<head>", "<head>" + PROBE, 1), encoding="utf-8"
    )
    result = _chromium("--dump-dom", probed.as_uri())
    found = re.search(r'<pre id="probe">(.*?)</pre>', result.stdout, re.S)
    assert found, result.stderr[-2000:]
    probe = json.loads(found.group(1).replace("&quot;", '"'))
    assert probe["errors"] == []
    times = probe["times"]
    assert len(times) == 3 and min(times) > 0.05  # every video advanced after Play
    assert max(times) - min(times) < 0.5  # and they stay together
    assert "uncaught" not in result.stderr.lower()


def test_screenshot_shows_the_videos(reported, tmp_path):
    root, _ = reported
    shot = tmp_path / "shot.png"
    page = root / "report" / "index.html"
    result = _chromium(f"--screenshot={shot}", "--window-size=1000,700", page.as_uri())
    assert shot.is_file(), result.stderr[-2000:]
    image = np.asarray(Image.open(shot).convert("RGB")).astype(np.int16)
    # the players' row: the first video's box is not the page's flat background
    video_box = image[110:350, 25:270]
    assert video_box.std() > 10, "the screenshot shows no video content"
    assert len(np.unique(video_box.reshape(-1, 3), axis=0)) > 50
