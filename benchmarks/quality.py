"""Quality benchmark: does each part of the method earn its place? (issue 7)

    python -m benchmarks.quality                      # the documented run (docs/quality.md)
    python -m benchmarks.quality --quick              # a few clips, few steps: a smoke run
    python -m benchmarks.quality --clips 6 --frames 8 --workers 2 --out DIR   # a reduced check

On held-out clips of the toy world (benchmarks/quality_cases.py) with colour, shape and
background edits, every row of ``quality_method.ROWS`` (the full method, the paper's ablations,
DDIM inversion + prompt-to-prompt, the full method with --blend) inverts and edits with the
project's toy model; each edit is scored against the exact source and the ideal target clip.

Writes ``DIR/quality.json`` (every number, per clip and aggregated), ``DIR/quality.md`` (the
tables), ``DIR/clips/*.json`` (one per finished clip: a rerun with the same settings skips it, so
an interrupted run resumes) and ``DIR/sheets/*.png`` (frames of every row for the first clips).
Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import quality_cases as cases
from benchmarks import quality_method as method

DEFAULT_OUT = Path("benchmarks/results/quality")
SCORE_KEYS = (
    "target_ok",
    "all_ok",
    "keep_psnr",
    "traj_px",
    "found",
    "smoothness",
    "frame_diff",
    "target_psnr",
)
COST_KEYS = ("recon_psnr", "seconds", "forward_equivalents", "stdg_applied", "stdg_bounded")
PAIRED_KEYS = ("keep_psnr", "traj_px", "target_psnr", "target_ok")


@dataclass(frozen=True)
class Config:
    model: str = "toy"
    clips: int = 20
    steps: int = 20
    inner_steps: int = 5
    frames: int = 16
    rows: tuple[str, ...] = method.ROW_NAMES
    workers: int = 1
    threads: int = 1
    sheets: int = 3
    device: str = "cpu"
    first_seed: int = cases.QUALITY_SEED_START

    @property
    def method(self) -> method.MethodSettings:
        return method.MethodSettings(steps=self.steps, inner_steps=self.inner_steps)

    def identity(self, model_identity: dict[str, str]) -> str:
        """What makes a per-clip result reusable: everything but the worker layout."""
        data = {
            "model": model_identity,
            "steps": self.steps,
            "inner_steps": self.inner_steps,
            "frames": self.frames,
            "rows": list(self.rows),
            "method": self.method.identity(),
            "first_seed": self.first_seed,
            "version": 2,
        }
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


QUICK = {"clips": 3, "steps": 3, "inner_steps": 1, "frames": 8, "sheets": 1}


# --------------------------------------------------------------------------------------------
# one clip
# --------------------------------------------------------------------------------------------


def load(config: Config):
    import torch

    from videodirector_cli.diffusion.loading import ModelSpec, load_model

    torch.set_num_threads(config.threads)
    return load_model(ModelSpec(model=config.model, device=config.device, dtype="fp32"))


def clip_size(model) -> int:
    return int(model.unet.config.sample_size) * model.vae_scale_factor


def run_clip(model, config: Config, index: int, sheet: Path | None = None) -> dict[str, Any]:
    """Invert and edit case ``index`` with every configured row; all numbers of that clip."""
    case = cases.make_case(
        index, frames=config.frames, size=clip_size(model), seed0=config.first_seed
    )
    rows = [r for r in method.ROWS if r.name in config.rows]
    settings = config.method
    vae = method.vae_round_trip(model, case)
    references = cases.reference_scores(case)
    references["vae round trip"] = {
        **cases.score_edit(case, vae),
        "recon_psnr": _psnr(vae, case.source.frames),
    }
    inversions: dict[str, method.Inverted] = {}
    results: dict[str, dict[str, Any]] = {}
    panels = [
        ("source: " + case.source_prompt, case.source.frames),
        ("ideal: " + case.target_prompt, case.target.frames),
    ]
    for row in rows:
        if row.inversion_id not in inversions:
            inversions[row.inversion_id] = method.invert(
                model, case, row.inversion, replace(settings, stdg_scale=row.stdg_scale)
            )
        inverted = inversions[row.inversion_id]
        frames, cost = method.edit(model, case, inverted, row, settings)
        results[row.name] = {
            **cases.score_edit(case, frames),
            "recon_psnr": inverted.recon_psnr,
            "seconds": inverted.seconds + cost["edit_seconds"],
            "forward_equivalents": inverted.forward_equivalents + cost["edit_forward_equivalents"],
            "inversion_seconds": inverted.seconds,
            "stdg_applied": inverted.stdg_applied,
            "stdg_bounded": inverted.stdg_bounded,
            "stdg_ratio_max": inverted.stdg_ratio_max,
            **cost,
        }
        panels.append((row.name, frames))
    if sheet is not None:
        from videodirector_cli.toy.grid import save_grid

        sheet.parent.mkdir(parents=True, exist_ok=True)
        save_grid(panels, sheet)
    return {
        "index": index,
        "seed": case.seed,
        "kind": case.kind,
        "changed": list(case.changed),
        "source_prompt": case.source_prompt,
        "target_prompt": case.target_prompt,
        "references": references,
        "inversions": {
            name: {
                "seconds": inv.seconds,
                "forward_equivalents": inv.forward_equivalents,
                "recon_psnr": inv.recon_psnr,
                "by_purpose": inv.by_purpose,
                "stdg_applied": inv.stdg_applied,
                "stdg_bounded": inv.stdg_bounded,
                "stdg_ratio_max": inv.stdg_ratio_max,
            }
            for name, inv in inversions.items()
        },
        "rows": results,
    }


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    from videodirector_cli import metrics

    return metrics.psnr(a, b)


# --------------------------------------------------------------------------------------------
# many clips (optionally in worker processes)
# --------------------------------------------------------------------------------------------

_WORKER_MODEL = None


def _worker_init(config: Config) -> None:
    global _WORKER_MODEL
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    _WORKER_MODEL = load(config)


def _worker_run(config: Config, index: int, sheet: str | None) -> dict[str, Any]:
    return _timed_clip(_WORKER_MODEL, config, index, Path(sheet) if sheet else None)


def _timed_clip(model, config: Config, index: int, sheet: Path | None) -> dict[str, Any]:
    started = time.perf_counter()
    result = run_clip(model, config, index, sheet)
    result["clip_seconds"] = time.perf_counter() - started
    return result


def _clip_path(out: Path, index: int) -> Path:
    return out / "clips" / f"{index:03d}.json"


def _cached(out: Path, index: int, identity: str) -> dict[str, Any] | None:
    path = _clip_path(out, index)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data["result"] if data.get("identity") == identity else None


def _save_clip(out: Path, index: int, identity: str, result: dict[str, Any]) -> None:
    path = _clip_path(out, index)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"identity": identity, "result": result}, default=_json_default))
    tmp.replace(path)


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.bool_):
        return bool(value)
    raise TypeError(f"cannot store {type(value).__name__} in JSON")


def run(config: Config, out: Path, log=None, collect: bool = False) -> dict[str, Any]:
    """The whole benchmark: per-clip results (reused when cached), tables, files in ``out``.

    ``collect``: compute nothing; tabulate the clips already finished with these settings (what
    an interrupted run got done)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)  # more threads than free cores only spin
    try:
        return _run(config, out, log, collect)
    finally:
        torch.set_num_threads(threads)


def _run(config: Config, out: Path, log, collect: bool) -> dict[str, Any]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True, highlight=False)
    say = log or (lambda message: console.print(message, markup=False))
    started = time.perf_counter()
    model = load(config)
    identity = config.identity(dict(model.identity))
    out.mkdir(parents=True, exist_ok=True)
    results: dict[int, dict[str, Any]] = {}
    todo = []
    for index in range(config.clips):
        cached = _cached(out, index, identity)
        if cached is not None:
            results[index] = cached
        else:
            todo.append(index)
    if results:
        say(f"reusing {len(results)} finished clips from {out / 'clips'}")
    if collect:
        todo = []
        if not results:
            raise SystemExit(f"no finished clips with these settings in {out / 'clips'}")

    def sheet_for(index: int) -> Path | None:
        return out / "sheets" / f"{index:03d}.png" if index < config.sheets else None

    columns = (
        TextColumn("[bold]quality"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"),
    )
    with Progress(*columns, console=console, disable=log is not None) as bar:
        task = bar.add_task("clips", total=config.clips, completed=len(results), info="")

        def finished(index: int, result: dict[str, Any]) -> None:
            results[index] = result
            _save_clip(out, index, identity, result)
            full = result["rows"].get("full") or next(iter(result["rows"].values()), {})
            info = (
                f"clip {index} ({result['kind']}): full keep {full.get('keep_psnr', float('nan')):.1f} dB, "
                f"target {'ok' if full.get('target_ok') else 'missed'}"
            )
            bar.update(task, advance=1, info=info)
            if log is not None or not console.is_terminal:  # a log file gets one line a clip
                say(f"[{len(results)}/{config.clips} {time.perf_counter() - started:.0f}s] {info}")

        if config.workers <= 1 or len(todo) <= 1:
            for index in todo:
                finished(index, _timed_clip(model, config, index, sheet_for(index)))
        else:
            import multiprocessing

            del model  # the workers load their own
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(
                max_workers=config.workers,
                mp_context=context,
                initializer=_worker_init,
                initargs=(config,),
            ) as pool:
                futures = {
                    pool.submit(
                        _worker_run, config, index, str(sheet_for(index) or "") or None
                    ): index
                    for index in todo
                }
                for future in as_completed(futures):
                    finished(futures[future], future.result())
    ordered = [results[i] for i in sorted(results)]
    report = {
        "config": asdict(config),
        "method": config.method.identity(),
        "identity": identity,
        "machine": machine(config),
        "wall_seconds": time.perf_counter() - started,
        "computed_clips": len(todo),
        "clips_done": len(ordered),
        "clip_seconds_total": sum(clip.get("clip_seconds", 0.0) for clip in ordered),
        "table": aggregate(ordered, config.rows),
        "references": aggregate_references(ordered),
        "paired_vs_full": paired(ordered, config.rows),
        "by_kind": by_kind(ordered, config.rows),
        "clips": ordered,
    }
    (out / "quality.json").write_text(json.dumps(report, indent=1, default=_json_default))
    (out / "quality.md").write_text(markdown(report))
    return report


# --------------------------------------------------------------------------------------------
# aggregation
# --------------------------------------------------------------------------------------------


def _mean(values: Sequence[float]) -> float:
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return float(np.mean(finite)) if finite else float("nan")


def _sem(values: Sequence[float]) -> float:
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if len(finite) < 2:
        return float("nan")
    return float(np.std(finite, ddof=1) / math.sqrt(len(finite)))


def aggregate(clips: list[dict[str, Any]], rows: Sequence[str]) -> dict[str, dict[str, float]]:
    """Row -> mean of every number over the clips (NaNs, e.g. no object found, left out)."""
    table = {}
    for name in rows:
        entries = [clip["rows"][name] for clip in clips if name in clip["rows"]]
        row = {key: _mean([e[key] for e in entries]) for key in (*SCORE_KEYS, *COST_KEYS)}
        row["n"] = len(entries)
        table[name] = row
    return table


def aggregate_references(clips: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    names = list(clips[0]["references"]) if clips else []
    table = {}
    for name in names:
        entries = [clip["references"][name] for clip in clips]
        keys = [*SCORE_KEYS, *(["recon_psnr"] if "recon_psnr" in entries[0] else [])]
        table[name] = {key: _mean([e[key] for e in entries]) for key in keys}
        table[name]["n"] = len(entries)
    return table


def paired(clips: list[dict[str, Any]], rows: Sequence[str]) -> dict[str, dict[str, dict]]:
    """Row - full, per clip, for the main numbers: mean and standard error of the difference."""
    if "full" not in rows:
        return {}
    out: dict[str, dict[str, dict]] = {}
    for name in rows:
        if name == "full":
            continue
        out[name] = {}
        for key in PAIRED_KEYS:
            diffs = [
                clip["rows"][name][key] - clip["rows"]["full"][key]
                for clip in clips
                if name in clip["rows"] and "full" in clip["rows"]
            ]
            out[name][key] = {"mean": _mean(diffs), "sem": _sem(diffs)}
    return out


def by_kind(clips: list[dict[str, Any]], rows: Sequence[str]) -> dict[str, dict[str, dict]]:
    """Edit kind -> row -> (edit accuracy, unedited-region PSNR, trajectory error, n)."""
    out: dict[str, dict[str, dict]] = {}
    for kind in cases.KINDS:
        chosen = [clip for clip in clips if clip["kind"] == kind]
        if not chosen:
            continue
        out[kind] = {}
        for name in rows:
            entries = [clip["rows"][name] for clip in chosen if name in clip["rows"]]
            out[kind][name] = {
                "target_ok": _mean([e["target_ok"] for e in entries]),
                "keep_psnr": _mean([e["keep_psnr"] for e in entries]),
                "traj_px": _mean([e["traj_px"] for e in entries]),
                "n": len(entries),
            }
    return out


def machine(config: Config) -> dict[str, Any]:
    import torch

    try:
        load_avg = [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not on every platform
        load_avg = []
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "threads_per_worker": config.threads,
        "workers": config.workers,
        "device": config.device,
        "load_average_at_end": load_avg,
    }


# --------------------------------------------------------------------------------------------
# markdown
# --------------------------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 2, percent: bool = False) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if percent:
        return f"{100 * value:.0f} %"
    return f"{value:.{digits}f}"


HEADER = (
    "| row | recon PSNR dB | edit acc | all attrs | keep PSNR dB | traj err px | found "
    "| smoothness | frame diff | target PSNR dB | s / clip | UNet FE / clip "
    "| STDG applied | bound acted |"
)


def _line(name: str, row: dict[str, float], cost: bool = True) -> str:
    cells = [
        name,
        _fmt(row.get("recon_psnr")),
        _fmt(row.get("target_ok"), percent=True),
        _fmt(row.get("all_ok"), percent=True),
        _fmt(row.get("keep_psnr")),
        _fmt(row.get("traj_px")),
        _fmt(row.get("found"), percent=True),
        _fmt(row.get("smoothness"), 4),
        _fmt(row.get("frame_diff"), 4),
        _fmt(row.get("target_psnr")),
        _fmt(row.get("seconds"), 1) if cost else "–",
        _fmt(row.get("forward_equivalents"), 0) if cost else "–",
        _fmt(row.get("stdg_applied"), 3) if cost else "–",
        _fmt(row.get("stdg_bounded"), percent=True) if cost else "–",
    ]
    return "| " + " | ".join(cells) + " |"


def markdown(report: dict[str, Any]) -> str:
    config = report["config"]
    lines = [
        f"Model `{config['model']}`, {report['clips_done']} of {config['clips']} held-out clips of "
        f"{config['frames']} frames (clip seeds from {config['first_seed']}), "
        f"{config['steps']} DDIM steps, null-text inner steps <= {config['inner_steps']}; "
        f"{report['clip_seconds_total'] / 60:.1f} min of clip work "
        f"({config['workers']} worker(s) x {config['threads']} thread(s)).",
        "",
        HEADER,
        "|" + "---|" * 14,
    ]
    for name, row in report["table"].items():
        lines.append(_line(name, row))
    for name, row in report["references"].items():
        lines.append(_line(f"*{name}*", row, cost=False))
    if report["paired_vs_full"]:
        lines += [
            "",
            "Paired differences to `full` (mean ± standard error over clips):",
            "",
            "| row | Δ edit acc | Δ keep PSNR dB | Δ traj err px | Δ target PSNR dB |",
            "|---|---|---|---|---|",
        ]
        for name, diffs in report["paired_vs_full"].items():
            cells = [name]
            for key in ("target_ok", "keep_psnr", "traj_px", "target_psnr"):
                d = diffs[key]
                scale = 100.0 if key == "target_ok" else 1.0
                unit = " pt" if key == "target_ok" else ""
                cells.append(f"{_fmt(scale * d['mean'], 1)} ± {_fmt(scale * d['sem'], 1)}{unit}")
            lines.append("| " + " | ".join(cells) + " |")
    if report["by_kind"]:
        lines += ["", "By edit kind (edit acc / keep PSNR dB):", ""]
        kinds = list(report["by_kind"])
        lines.append(
            "| row | "
            + " | ".join(f"{k} (n={next(iter(report['by_kind'][k].values()))['n']})" for k in kinds)
            + " |"
        )
        lines.append("|---|" + "---|" * len(kinds))
        for name in report["table"]:
            cells = [name]
            for kind in kinds:
                entry = report["by_kind"][kind].get(name, {})
                cells.append(
                    f"{_fmt(entry.get('target_ok'), percent=True)} / {_fmt(entry.get('keep_psnr'), 1)}"
                )
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> tuple[Config, Path, bool]:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.quality", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 3 clips, 8 frames, 3 steps, 1 inner step (numbers mean little)",
    )
    parser.add_argument("--clips", type=int, help="number of held-out clips (default 20)")
    parser.add_argument("--steps", type=int, help="DDIM steps of inversion and edit (default 20)")
    parser.add_argument(
        "--inner",
        type=int,
        dest="inner_steps",
        help="most null-text Adam updates per step (default 5)",
    )
    parser.add_argument("--frames", type=int, help="frames per clip (default 16)")
    parser.add_argument(
        "--first-seed",
        type=int,
        dest="first_seed",
        help=f"clip seed of the first clip (default {cases.QUALITY_SEED_START})",
    )
    parser.add_argument(
        "--model", default=None, help="'toy' (default) or 'tiny' (random: for tests)"
    )
    parser.add_argument(
        "--rows",
        default=None,
        help=f"comma list of rows (default all: {','.join(method.ROW_NAMES)})",
    )
    parser.add_argument("--workers", type=int, help="worker processes (default 1)")
    parser.add_argument("--threads", type=int, help="torch threads per worker (default 1)")
    parser.add_argument("--sheets", type=int, help="frame sheets of the first N clips (default 3)")
    parser.add_argument("--device", default=None, help="cpu (default), cuda, ...")
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"output folder ({DEFAULT_OUT})"
    )
    parser.add_argument(
        "--collect",
        action="store_true",
        help="compute nothing: tabulate the clips already finished in --out",
    )
    args = parser.parse_args(argv)
    config = Config(**QUICK) if args.quick else Config()
    overrides = {
        key: getattr(args, key)
        for key in (
            "clips",
            "steps",
            "inner_steps",
            "frames",
            "first_seed",
            "model",
            "workers",
            "threads",
            "sheets",
            "device",
        )
        if getattr(args, key) is not None
    }
    if args.rows:
        rows = tuple(r.strip() for r in args.rows.split(",") if r.strip())
        unknown = [r for r in rows if r not in method.ROW_NAMES]
        if unknown:
            parser.error(f"unknown rows {unknown}; choose from {', '.join(method.ROW_NAMES)}")
        overrides["rows"] = rows
    config = replace(config, **overrides)
    if config.clips < 1 or config.steps < 1 or config.frames < 3 or config.inner_steps < 0:
        parser.error("need --clips >= 1, --steps >= 1, --frames >= 3, --inner >= 0")
    return config, args.out, args.collect


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    config, out, collect = parse_args(argv)
    report = run(config, out, collect=collect)
    sys.stdout.write(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
