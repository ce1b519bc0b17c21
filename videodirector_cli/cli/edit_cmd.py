"""`vdir edit "EDIT PROMPT"`: edit the project's inversion with a new prompt."""

from __future__ import annotations

import typer

from videodirector_cli.cli.app import handles_errors
from videodirector_cli.cli.options import (
    DEFAULT_DEVICE,
    DEFAULT_DTYPE,
    DEFAULT_MEMORY,
    DeviceOpt,
    DtypeOpt,
    GpuOpt,
    JsonOpt,
    MemoryOpt,
    ModelOpt,
    MotionAdapterOpt,
    PlanOpt,
    ProjectOpt,
    QuietOpt,
    VaeOpt,
    make_output,
    run_stage,
    setting,
)
from videodirector_cli.settings.edit import EditRequest, EditSettings, parse_reweight
from videodirector_cli.settings.model import ModelChoice, RunChoice


@handles_errors
def edit(
    prompt: str = setting(EditRequest, "prompt", argument=True, show_default=False),
    name: str | None = setting(EditRequest, "name", show_default=False),
    inversion: str | None = setting(EditRequest, "inversion", show_default=False),
    tau_s: float = setting(EditSettings, "tau_s"),
    tau_c: float = setting(EditSettings, "tau_c"),
    sa2_layers: str = setting(EditSettings, "sa2_layers"),
    mode: str = setting(EditSettings, "mode"),
    reweight: list[str] | None = setting(
        EditSettings, "reweight", default=None, show_default=False
    ),
    blend: bool = setting(EditSettings, "blend"),
    blend_dilate: int = setting(EditSettings, "blend_dilate"),
    mask: str = setting(EditSettings, "mask"),
    target: str | None = setting(EditSettings, "target", show_default=False),
    no_sa1: bool = setting(EditSettings, "sa1", default=False),
    no_sa2: bool = setting(EditSettings, "sa2", default=False),
    no_cross: bool = setting(EditSettings, "cross", default=False),
    force: bool = setting(EditRequest, "force"),
    model: ModelOpt = None,
    motion_adapter: MotionAdapterOpt = None,
    vae: VaeOpt = None,
    device: DeviceOpt = DEFAULT_DEVICE,
    dtype: DtypeOpt = DEFAULT_DTYPE,
    memory: MemoryOpt = DEFAULT_MEMORY,
    plan: PlanOpt = False,
    gpu: GpuOpt = None,
    project: ProjectOpt = None,
    json_output: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Edit the inverted video with a new prompt (stage 2: dual-path sampling with self- and
    cross-attention control). Writes edits/NAME/ (latents, frames, edit.json). The model is the
    inversion's; --model etc. are only checked against it."""
    from videodirector_cli.stages.edit import run_edit

    output = make_output(json_output, quiet)
    settings = EditSettings.of(
        tau_s=tau_s,
        tau_c=tau_c,
        sa2_layers=sa2_layers,
        mode=mode,
        reweight=parse_reweight(list(reweight or [])),
        blend=blend,
        blend_dilate=blend_dilate,
        mask=mask,
        target=target,
        sa1=not no_sa1,
        sa2=not no_sa2,
        cross=not no_cross,
    )
    choice = ModelChoice(
        model=model, motion_adapter=motion_adapter, vae=vae, device=device, dtype=dtype
    )
    request = EditRequest(
        prompt=prompt,
        name=name,
        inversion=inversion,
        force=force,
        settings=settings,
        model=choice,
        run=RunChoice(memory=memory, plan=plan, gpu=gpu),
    )
    run_stage(run_edit, project, request, output)


def register(app: typer.Typer) -> None:
    app.command("edit")(edit)
