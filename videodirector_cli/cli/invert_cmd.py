"""`vdir invert`: stage 1, pivotal inversion of the project's frames (resumable)."""

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
from videodirector_cli.errors import UsageError
from videodirector_cli.settings.base import field_default
from videodirector_cli.settings.invert import (
    InvertRequest,
    InvertSettings,
    NullTextSettings,
    STDGSettings,
)
from videodirector_cli.settings.model import ModelChoice, RunChoice


def _floats(text: str, option: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise UsageError(f"{option} takes comma-separated numbers, not {text!r}") from None


@handles_errors
def invert(
    prompt: str | None = setting(InvertRequest, "prompt", show_default=False),
    steps: int = setting(InvertSettings, "steps"),
    cfg: float = setting(InvertSettings, "guidance_scale"),
    negative_prompt: str = setting(InvertSettings, "negative_prompt"),
    method: str = setting(InvertSettings, "method"),
    null: str = setting(NullTextSettings, "mode"),
    inner_steps: int = setting(NullTextSettings, "inner_steps"),
    lr: float = setting(NullTextSettings, "learning_rate"),
    early_stop: float = setting(NullTextSettings, "early_stop"),
    early_stop_slope: float = setting(NullTextSettings, "early_stop_slope"),
    no_stdg: bool = setting(STDGSettings, "enabled", default=False),
    stdg_blocks: str = setting(
        STDGSettings, "blocks", default=",".join(field_default(STDGSettings, "blocks"))
    ),
    block_weights: str | None = setting(
        STDGSettings, "block_weights", default=None, show_default=False
    ),
    eta_f: float = setting(STDGSettings, "eta_f"),
    eta_b: float = setting(STDGSettings, "eta_b"),
    zeta_f: float = setting(STDGSettings, "zeta_f"),
    zeta_b: float = setting(STDGSettings, "zeta_b"),
    target: str = setting(STDGSettings, "target"),
    stdg_scale: float = setting(STDGSettings, "scale"),
    stdg_max_ratio: float = setting(STDGSettings, "max_ratio"),
    mask: str = setting(InvertSettings, "mask"),
    seed: int = setting(InvertSettings, "seed"),
    window: int | None = setting(InvertSettings, "window", default=None, show_default=False),
    window_overlap: int | None = setting(
        InvertSettings, "window_overlap", default=None, show_default=False
    ),
    no_report: bool = setting(InvertSettings, "report", default=False),
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
    """Invert the frames: DDIM inversion, then per-step null-text optimisation with STDG.

    Writes inversions/KEY/ (KEY hashes every setting and input, so a change never overwrites an earlier inversion). Each step is saved as it finishes: after Ctrl-C or a crash, the same command continues where it stopped.
    """
    from videodirector_cli.stages.invert import run_invert

    out = make_output(json_output, quiet)
    blocks = tuple(b.strip() for b in stdg_blocks.split(",") if b.strip())
    settings = InvertSettings.of(
        steps=steps,
        guidance_scale=cfg,
        negative_prompt=negative_prompt,
        method=method,
        null_text=NullTextSettings.of(
            mode=null,
            inner_steps=inner_steps,
            learning_rate=lr,
            early_stop=early_stop,
            early_stop_slope=early_stop_slope,
        ),
        stdg=STDGSettings.of(
            enabled=not no_stdg,
            blocks=blocks,
            block_weights=_floats(block_weights, "--block-weights") if block_weights else None,
            eta_f=eta_f,
            eta_b=eta_b,
            zeta_f=zeta_f,
            zeta_b=zeta_b,
            target=target,
            scale=stdg_scale,
            max_ratio=stdg_max_ratio,
        ),
        mask=mask,
        seed=seed,
        window=window,
        window_overlap=window_overlap,
        report=not no_report,
    )
    choice = ModelChoice(
        model=model, motion_adapter=motion_adapter, vae=vae, device=device, dtype=dtype
    )
    run = RunChoice(memory=memory, plan=plan, gpu=gpu)
    request = InvertRequest(prompt=prompt, settings=settings, model=choice, run=run)
    run_stage(run_invert, project, request, out)


def register(app: typer.Typer) -> None:
    app.command("invert")(invert)
