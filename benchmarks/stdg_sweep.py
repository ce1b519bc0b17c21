"""The sweep behind --stdg-max-ratio's default (docs/inversion.md, "Choosing the bound").

    python -m benchmarks.stdg_sweep --clips 6 --steps 20 --inner 5 --ratios 0.1,0.25,0.5,1,inf

On the quality benchmark's clips (benchmarks/quality_cases.py), for each (scale, max ratio):
the reconstruction PSNR of the STDG inversion against the same inversion without STDG, the
mean applied ratio and how often the bound acted, and for background edits whether the edited
clip's object kept its source colour (the unbounded guidance carried the target colour into
it). ``inf`` is no bound at all (not accepted by `vdir invert`; here to show what it does).
``--no-size-factor`` drops the loss's h*w/64^2 normalisation, to measure what it does.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import replace
from typing import Any

import numpy as np

from benchmarks import quality_cases as cases
from benchmarks import quality_method as method


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import torch

    from videodirector_cli.diffusion import stdg as stdg_module
    from videodirector_cli.diffusion.loading import ModelSpec, load_model

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--first-clip", type=int, default=0)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--inner", type=int, default=5)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--scales", default="1")
    parser.add_argument("--ratios", default="0.25,0.5,1,inf")
    parser.add_argument("--no-size-factor", action="store_true")
    parser.add_argument("--no-edit", action="store_true", help="reconstruction only")
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.no_size_factor:
        stdg_module.size_factor = lambda latent_size: 1.0  # type: ignore[assignment]
    model = load_model(ModelSpec(model="toy", device="cpu", dtype="fp32"))
    size = int(model.unet.config.sample_size) * model.vae_scale_factor
    settings = method.MethodSettings(steps=args.steps, inner_steps=args.inner)
    variants = [(s, r) for s in _floats(args.scales) for r in _floats(args.ratios)]
    rows: dict[str, list[dict[str, Any]]] = {"no-stdg": []}
    for scale, ratio in variants:
        rows[f"scale {scale:g} ratio {ratio:g}"] = []
    started = time.perf_counter()
    for index in range(args.first_clip, args.first_clip + args.clips):
        case = cases.make_case(index, frames=args.frames, size=size)
        for name in rows:
            if name == "no-stdg":
                inverted = method.invert(model, case, "no-stdg", settings)
            else:
                scale, ratio = variants[list(rows).index(name) - 1]
                inverted = method.invert(
                    model, case, "full", replace(settings, stdg_scale=scale, max_ratio=ratio)
                )
            steps = inverted.stored.trajectory
            record: dict[str, Any] = {
                "clip": index,
                "kind": case.kind,
                "recon_psnr": inverted.recon_psnr,
                "ratio_max": max(s.guidance_ratio for s in steps),
                "applied_mean": float(np.mean([s.applied_ratio for s in steps])),
                "bounded_share": float(np.mean([s.bounded for s in steps])),
            }
            if case.kind == "background" and not args.no_edit:
                frames, _ = method.edit(model, case, inverted, method.ROWS[0], settings)
                scored = cases.score_edit(case, frames)
                record["object_colour_kept"] = float(scored["pred_colour"] == case.source.colour)
                record["target_ok"] = scored["target_ok"]
            rows[name].append(record)
            print(json.dumps({"row": name, **record}), flush=True)
    summary = {
        name: {
            "recon_psnr": float(np.mean([r["recon_psnr"] for r in records])),
            "ratio_max": float(np.max([r["ratio_max"] for r in records])),
            "applied_mean": float(np.mean([r["applied_mean"] for r in records])),
            "bounded_share": float(np.mean([r["bounded_share"] for r in records])),
            "object_colour_kept": _mean([r.get("object_colour_kept") for r in records]),
            "bg_target_ok": _mean([r.get("target_ok") for r in records]),
        }
        for name, records in rows.items()
    }
    base = summary["no-stdg"]["recon_psnr"]
    print(
        f"\n{args.clips} clips, {args.steps} steps, {args.inner} updates, "
        f"size factor {'off' if args.no_size_factor else 'on'}, "
        f"{time.perf_counter() - started:.0f} s"
    )
    print(
        "| row | recon PSNR | vs no-STDG | max ratio before | mean applied | bound acted | "
        "bg: object colour kept | bg: target ok |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, s in summary.items():
        print(
            f"| {name} | {s['recon_psnr']:.2f} | {s['recon_psnr'] - base:+.2f} | "
            f"{s['ratio_max']:.3g} | {s['applied_mean']:.3g} | {s['bounded_share']:.0%} | "
            f"{_fmt(s['object_colour_kept'])} | {_fmt(s['bg_target_ok'])} |"
        )
    if args.out:
        with open(args.out, "w") as handle:
            json.dump({"args": vars(args), "summary": summary, "rows": rows}, handle, indent=1)
    return summary


def _mean(values: list[Any]) -> float:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else math.nan


def _fmt(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.0%}"


if __name__ == "__main__":
    main()
