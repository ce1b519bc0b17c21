"""`vdir invert`: stage 1, pivotal inversion of the project's frames (resumable)."""

from __future__ import annotations

from typing import Annotated

import typer

from videodirector_cli.cli.app import handles_errors
from videodirector_cli.cli.options import (
    DeviceOpt,
    DtypeOpt,
    JsonOpt,
    ModelOpt,
    MotionAdapterOpt,
    ProjectOpt,
    QuietOpt,
    VaeOpt,
    make_output,
)
from videodirector_cli.errors import UsageError


def _floats(text: str, option: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise UsageError(f"{option} takes comma-separated numbers, not {text!r}") from None


@handles_errors
def invert(
    prompt: Annotated[
        str | None,
        typer.Option(
            "--prompt",
            help="Source prompt describing the video as it is ('a brown bear walking on rocks'). "
            "Sets the project's prompt; default: the one given to vdir init.",
            show_default=False,
        ),
    ] = None,
    steps: Annotated[
        int, typer.Option("--steps", help="DDIM steps (the same grid is used for editing).")
    ] = 50,
    cfg: Annotated[
        float, typer.Option("--cfg", help="Classifier-free guidance weight the edit will use.")
    ] = 7.5,
    null: Annotated[
        str,
        typer.Option(
            "--null",
            help="'per-frame': one optimised null embedding per frame (the paper's); 'shared': "
            "one for all frames (null-text inversion as for images).",
        ),
    ] = "per-frame",
    inner_steps: Annotated[
        int, typer.Option("--inner-steps", help="Most Adam updates of the null per step.")
    ] = 10,
    lr: Annotated[
        float,
        typer.Option(
            "--lr", help="Adam learning rate at the first step (halves linearly by the last)."
        ),
    ] = 1e-2,
    early_stop: Annotated[
        float,
        typer.Option(
            "--early-stop",
            help="A step's updates stop once its latent MSE is below this plus step x "
            "--early-stop-slope.",
        ),
    ] = 1e-5,
    early_stop_slope: Annotated[
        float, typer.Option("--early-stop-slope", help="Per-step growth of --early-stop.")
    ] = 2e-5,
    no_stdg: Annotated[
        bool,
        typer.Option("--no-stdg", help="Skip spatial-temporal decoupled guidance (STDG)."),
    ] = False,
    stdg_blocks: Annotated[
        str,
        typer.Option(
            "--stdg-blocks",
            help="UNet blocks whose temporal attention and self-attention keys STDG compares.",
        ),
    ] = "up_blocks.1,up_blocks.2",
    block_weights: Annotated[
        str | None,
        typer.Option(
            "--block-weights",
            help="One STDG weight per block, comma-separated. Default: 20000 for up_blocks.1, "
            "10000 for any other (the reference's values).",
            show_default=False,
        ),
    ] = None,
    eta_f: Annotated[
        float, typer.Option("--eta-f", help="STDG motion guidance inside the mask.")
    ] = 0.5,
    eta_b: Annotated[
        float,
        typer.Option(
            "--eta-b", help="STDG motion guidance outside the mask (0.2-0.8 in the paper)."
        ),
    ] = 0.5,
    zeta_f: Annotated[
        float, typer.Option("--zeta-f", help="STDG appearance guidance inside the mask.")
    ] = 0.0,
    zeta_b: Annotated[
        float, typer.Option("--zeta-b", help="STDG appearance guidance outside the mask.")
    ] = 0.5,
    target: Annotated[
        str,
        typer.Option(
            "--target",
            help="What the edit will change: 'foreground' (the masked object) or 'background' "
            "(swaps the foreground and background coefficients).",
        ),
    ] = "foreground",
    mask: Annotated[
        str,
        typer.Option(
            "--mask",
            help="'auto': use the project's masks when there are any; 'none': ignore them (the "
            "whole frame is foreground, background STDG terms are off).",
        ),
    ] = "auto",
    seed: Annotated[int, typer.Option("--seed", help="Random seed (for exact reruns).")] = 0,
    no_report: Annotated[
        bool,
        typer.Option(
            "--no-report",
            help="Skip the reconstruction report (it costs 2 UNet passes per step and decoding).",
        ),
    ] = False,
    model: ModelOpt = None,
    motion_adapter: MotionAdapterOpt = None,
    vae: VaeOpt = None,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    project: ProjectOpt = None,
    json_output: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Invert the frames: DDIM inversion, then per-step null-text optimisation with STDG.

    Writes inversions/KEY/ (KEY hashes every setting and input, so a change never overwrites an earlier inversion). Each step is saved as it finishes: after Ctrl-C or a crash, the same command continues where it stopped.
    """
    from videodirector_cli.stages.invert import InvertRequest, run_invert

    out = make_output(json_output, quiet)
    blocks = tuple(b.strip() for b in stdg_blocks.split(",") if b.strip())
    request = InvertRequest(
        prompt=prompt,
        steps=steps,
        guidance_scale=cfg,
        null_mode=null,
        inner_steps=inner_steps,
        learning_rate=lr,
        early_stop=early_stop,
        early_stop_slope=early_stop_slope,
        stdg=not no_stdg,
        stdg_blocks=blocks,
        block_weights=_floats(block_weights, "--block-weights") if block_weights else None,
        eta_f=eta_f,
        eta_b=eta_b,
        zeta_f=zeta_f,
        zeta_b=zeta_b,
        target=target,
        mask=mask,
        seed=seed,
        report=not no_report,
        model=model,
        motion_adapter=motion_adapter,
        vae=vae,
        device=device,
        dtype=dtype,
    )
    outcome = run_invert(project, request, out)
    out.result(outcome.data, outcome.human)


def register(app: typer.Typer) -> None:
    app.command("invert")(invert)
