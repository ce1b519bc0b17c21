"""The demo's clip with other target colours and shapes: is the default pair a lucky pick?

    python -m benchmarks.demo_pairs --out benchmarks/results/demo-pairs

Runs `vdir demo`'s stages (the same request, 15 steps, 3 null-text updates) once per pair of
(new colour, new shape) and scores both edits with the toy world's scorer: right when the colour,
shape, direction and background all read as asked. Writes ``DIR/pairs.json``; one line per edit
and a summary line on stdout. About a minute per pair on one CPU thread.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from videodirector_cli.cli.options import make_output
from videodirector_cli.media.frames import read_frames
from videodirector_cli.project.store import Project
from videodirector_cli.settings.demo import DemoRequest
from videodirector_cli.stages.demo import run_demo
from videodirector_cli.toy import scorer

PAIRS = (
    ("white", "square"),  # the demo's own
    ("blue", "triangle"),
    ("yellow", "diamond"),
    ("orange", "triangle"),
    ("purple", "square"),
    ("white", "diamond"),
    ("orange", "square"),
)


def score_edits(folder: Path, request: DemoRequest) -> list[dict]:
    project = Project.open(folder / "project")
    wanted = {
        "colour": (request.new_colour, request.shape),
        "shape": (request.colour, request.new_shape),
    }
    rows = []
    for name, (colour, shape) in wanted.items():
        frames = read_frames([project.paths.edit_frame(name, i) for i in range(16)])
        score = scorer.score_clip(frames, colour, shape, request.direction, request.background)
        ok = score.colour_ok and score.shape_ok and score.direction_ok and score.bg_ok
        rows.append(
            {
                "edit": name,
                "colour": colour,
                "shape": shape,
                "read_colour": score.pred_colour,
                "read_shape": score.pred_shape,
                "read_direction": score.pred_direction,
                "background_ok": score.bg_ok,
                "ok": bool(ok),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for pairs.json and runs")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error("--threads must be at least 1")
    torch.set_num_threads(args.threads)
    started = time.time()
    rows = []
    for new_colour, new_shape in PAIRS:
        request = DemoRequest(new_colour=new_colour, new_shape=new_shape)
        folder = args.out / "runs" / f"{new_colour}-{new_shape}"
        run_demo(folder, request, make_output(True, True))
        for row in score_edits(folder, request):
            rows.append(row)
            print(json.dumps(row), flush=True)
    summary = {
        edit: f"{sum(r['ok'] for r in rows if r['edit'] == edit)} of {len(PAIRS)}"
        for edit in ("colour", "shape")
    }
    report = {
        "request": DemoRequest().model_dump(),
        "pairs": rows,
        "right": summary,
        "seconds": round(time.time() - started, 1),
        "threads": args.threads,
        "machine": platform.processor() or platform.machine(),
    }
    (args.out / "pairs.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(f"right: colour edits {summary['colour']}, shape edits {summary['shape']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
