"""benchmarks/quality.py: the table's shape, finite numbers, pass accounting, resuming.

One test runs the whole runner in-process on the random ``tiny`` model (numbers meaningless,
plumbing real; the default suite's smoke of the benchmark); a slow one runs
``python -m benchmarks.quality --quick`` on the shipped toy model as a user would (about a
minute).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import quality, quality_cases, quality_method  # noqa: E402

ALWAYS_FINITE = (
    "recon_psnr",
    "keep_psnr",
    "smoothness",
    "frame_diff",
    "target_psnr",
    "seconds",
    "forward_equivalents",
    "target_ok",
    "all_ok",
)


def check_report(report: dict, out: Path, clips: int) -> None:
    table = report["table"]
    assert list(table) == list(quality_method.ROW_NAMES)
    for name, row in table.items():
        assert row["n"] == clips, name
        for key in ALWAYS_FINITE:
            assert math.isfinite(row[key]), (name, key, row[key])
        assert 0.0 <= row["target_ok"] <= 1.0 and 0.0 <= row["found"] <= 1.0
        assert row["forward_equivalents"] > 0 and row["seconds"] > 0
    assert set(report["references"]) == {"no edit (source)", "ideal edit", "vae round trip"}
    ideal = report["references"]["ideal edit"]
    assert ideal["target_ok"] == 1.0 and ideal["all_ok"] == 1.0 and ideal["traj_px"] == 0.0
    assert report["references"]["no edit (source)"]["target_ok"] == 0.0
    assert set(report["paired_vs_full"]) == set(quality_method.ROW_NAMES) - {"full"}
    md = (out / "quality.md").read_text()
    table_lines = [line for line in md.splitlines() if line.startswith("| ")]
    for name in [*quality_method.ROW_NAMES, "*ideal edit*", "*vae round trip*"]:
        assert any(line.startswith(f"| {name} |") for line in table_lines), name
    header = next(line for line in table_lines if line.startswith("| row | recon"))
    first_row = next(line for line in table_lines if line.startswith("| full |"))
    assert header.count("|") == first_row.count("|")
    saved = json.loads((out / "quality.json").read_text())
    assert len(saved["clips"]) == clips


def test_tiny_run_has_every_row_and_finite_numbers(tmp_path, monkeypatch, tiny_model):
    """The default suite's smoke of the benchmark: quality.run in-process, smallest settings."""
    monkeypatch.setattr(quality, "load", lambda config: tiny_model)
    config = quality.Config(model="tiny", clips=1, steps=2, inner_steps=1, frames=4, sheets=1)
    lines: list[str] = []
    report = quality.run(config, tmp_path, log=lines.append)
    check_report(report, tmp_path, clips=1)
    assert (tmp_path / "sheets" / "000.png").is_file()
    clip = report["clips"][0]
    inversions = clip["inversions"]
    assert set(inversions) == {
        "full",
        "shared",
        "no-stdg",
        "ddim",
        "full@0.25",
        "full@4",
        "negative-prompt",
        "negative-prompt-no-stdg",
    }
    # rows that share the full inversion are charged the same inversion
    for name in ("no-sa1", "no-sa2", "no-cross", "full+blend", "replace"):
        assert clip["rows"][name]["inversion_seconds"] == clip["rows"]["full"]["inversion_seconds"]
    # plain DDIM inversion optimises nothing: it is the cheapest; STDG costs passes
    fe = {k: v["forward_equivalents"] for k, v in inversions.items()}
    assert fe["ddim"] < fe["no-stdg"] < fe["full"]
    # the fast mode: no null-text pass at all, 1 forward per step without STDG
    assert fe["negative-prompt-no-stdg"] < fe["ddim"] and fe["negative-prompt"] < fe["full"]
    assert "null-text" not in inversions["negative-prompt"]["by_purpose"]
    assert inversions["full"]["by_purpose"].get("stdg", 0) > 0
    assert "stdg" not in inversions["no-stdg"]["by_purpose"]
    # every row reports how much STDG acted; the scale rows scale it (below the bound)
    applied = {k: v["stdg_applied"] for k, v in inversions.items()}
    assert applied["no-stdg"] == applied["ddim"] == 0.0 and applied["full"] > 0
    assert applied["full@0.25"] < applied["full"] < applied["full@4"]
    for row in report["table"].values():
        assert 0.0 <= row["stdg_bounded"] <= 1.0 and row["stdg_applied"] >= 0
    # a second run with the same settings reuses the finished clip
    again = quality.run(config, tmp_path, log=lines.append)
    assert again["computed_clips"] == 0 and again["clips_done"] == 1
    assert json.dumps(again["table"]) == json.dumps(report["table"])
    # an interrupted longer run: --collect tabulates what is finished, computes nothing
    partial = quality.run(replace(config, clips=3), tmp_path, log=lines.append, collect=True)
    assert partial["computed_clips"] == 0 and partial["clips_done"] == 1
    assert "1 of 3 held-out clips" in (tmp_path / "quality.md").read_text()


def test_cases_cycle_edit_kinds_and_change_one_word():
    for index in range(6):
        case = quality_cases.make_case(index)
        assert case.kind == quality_cases.KINDS[index % 3]
        assert case.seed >= quality_cases.QUALITY_SEED_START
        src, tgt = case.source_prompt.split(), case.target_prompt.split()
        assert len(src) == len(tgt) and sum(a != b for a, b in zip(src, tgt)) == 1
        assert case.keep_region.any() and not (case.keep_region & case.edit_region).all()


def test_command_line_options():
    config, out, collect = quality.parse_args(["--quick", "--rows", "full,no-sa1", "--out", "x"])
    assert config.clips == quality.QUICK["clips"] and config.rows == ("full", "no-sa1")
    assert out == Path("x") and not collect
    assert config.first_seed == quality_cases.QUALITY_SEED_START
    assert quality.parse_args(["--first-seed", "7"])[0].first_seed == 7
    assert quality_cases.make_case(0, seed0=7).seed == 7
    with pytest.raises(SystemExit):
        quality.parse_args(["--rows", "full,bogus"])


@pytest.mark.slow
def test_quick_run_on_the_toy_model(tmp_path):
    """The whole benchmark on the shipped toy model, as a user runs it (about a minute)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.quality", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "quality.json").read_text())
    check_report(report, tmp_path, clips=quality.QUICK["clips"])
    assert "| full |" in result.stdout
