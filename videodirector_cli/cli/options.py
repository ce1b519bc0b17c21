"""Option aliases shared by several commands, defined once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from videodirector_cli.output import Output

ProjectOpt = Annotated[
    Path | None,
    typer.Option(
        "--project",
        "-p",
        envvar="VDIR_PROJECT",
        help="Project folder. Default: the current folder or the nearest parent holding a project.",
        show_default=False,
    ),
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print one machine-readable JSON result on stdout.")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")]

ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        envvar="VDIR_MODEL",
        help="Base model: a hub id, a local diffusers folder, a single .safetensors/.ckpt "
        "SD1.5 checkpoint, or a built-in name ('toy', 'tiny'). Default: Realistic Vision V6.0 B1.",
        show_default=False,
    ),
]
MotionAdapterOpt = Annotated[
    str | None,
    typer.Option(
        "--motion-adapter",
        envvar="VDIR_MOTION_ADAPTER",
        help="AnimateDiff motion adapter: a hub id, a local folder, or an original "
        "motion-module file such as v3_sd15_mm.ckpt. Default: AnimateDiff v3.",
        show_default=False,
    ),
]
VaeOpt = Annotated[
    str | None,
    typer.Option(
        "--vae",
        envvar="VDIR_VAE",
        help="Optional VAE override: hub id, local folder or single file.",
        show_default=False,
    ),
]
DeviceOpt = Annotated[
    str,
    typer.Option(
        "--device",
        envvar="VDIR_DEVICE",
        help="auto (cuda, then mps, then cpu), cuda, cuda:N, mps or cpu.",
    ),
]
DtypeOpt = Annotated[
    str,
    typer.Option(
        "--dtype",
        envvar="VDIR_DTYPE",
        help="auto (bf16 on CUDA, fp16 on MPS, fp32 on CPU), bf16, fp16 or fp32.",
    ),
]


def make_output(json_mode: bool, quiet: bool) -> Output:
    if json_mode:
        return Output(mode="json")
    if quiet:
        return Output(mode="quiet")
    return Output(mode="human")
