"""`vdir edit "EDIT PROMPT"`: edit the project's inversion with a new prompt."""

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


@handles_errors
def edit(
    prompt: Annotated[
        str,
        typer.Argument(
            help="The edited video's description, written like the source prompt with the words "
            "that change: 'a tiger walking on rocks' for 'a brown bear walking on rocks'.",
            show_default=False,
        ),
    ],
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            help="Folder name under edits/ (letters, digits, . _ -). Default: the prompt's new "
            "words, e.g. 'tiger'; a different edit with the same words gets 'tiger-2'.",
            show_default=False,
        ),
    ] = None,
    inversion: Annotated[
        str | None,
        typer.Option(
            "--inversion",
            help="Inversion KEY (or a unique prefix; vdir status lists them). Default: the "
            "project's current inversion.",
            show_default=False,
        ),
    ] = None,
    tau_s: Annotated[
        float,
        typer.Option(
            "--tau-s",
            help="Fraction of the steps that use SA-I (the reconstruction's self-attention maps "
            "lay out the edit); SA-II runs for the rest. The reference tunes it per clip in "
            "0.3-0.6: higher keeps more of the source's layout.",
        ),
    ] = 0.4,
    tau_c: Annotated[
        float,
        typer.Option(
            "--tau-c",
            help="Fraction of the steps with cross-attention control (shared words take the "
            "source's maps; reweighting applies).",
        ),
    ] = 0.8,
    sa2_layers: Annotated[
        str,
        typer.Option(
            "--sa2-layers",
            help="Spatial self-attention layers for SA-II: 'decoder' (the up blocks; layers 7-15 "
            "in SD1.5, as the reference), 'all', 'none', or a comma list of call-order indices, "
            "ranges (7-15) and block names (up_blocks.1).",
        ),
    ] = "decoder",
    mode: Annotated[
        str,
        typer.Option(
            "--mode",
            help="Cross-attention mapping: 'replace' swaps words one for one (same word "
            "count), 'refine' aligns inserted or removed words, 'auto' picks replace when the "
            "word counts match and refine otherwise.",
        ),
    ] = "auto",
    reweight: Annotated[
        list[str] | None,
        typer.Option(
            "--reweight",
            help="WORD=VALUE: scale the attention to a word of the edit prompt (e.g. tiger=2 "
            "to strengthen it, 0.5 to soften it). Repeatable.",
            show_default=False,
        ),
    ] = None,
    blend: Annotated[
        bool,
        typer.Option(
            "--blend",
            help="Beyond the paper: after every step keep the reconstruction's latents "
            "outside the (dilated) mask, so the background matches the source exactly. Needs "
            "masks.",
        ),
    ] = False,
    blend_dilate: Annotated[
        int,
        typer.Option(
            "--blend-dilate",
            help="Grow the --blend region by this many frame pixels (rounded up to whole "
            "latent cells of 8 pixels), so an edited object may be a little larger.",
        ),
    ] = 0,
    mask: Annotated[
        str,
        typer.Option(
            "--mask",
            help="'auto': use the project's masks when it has them (SA-II keeps source content "
            "out of the masked region); 'none': ignore them.",
        ),
    ] = "auto",
    target: Annotated[
        str | None,
        typer.Option(
            "--target",
            help="What the edit changes: 'foreground' (the masked object) or 'background' "
            "(everything else: SA-II and --blend then protect the object). Default: the "
            "inversion's --target.",
            show_default=False,
        ),
    ] = None,
    no_sa1: Annotated[bool, typer.Option("--no-sa1", help="Ablation: turn SA-I off.")] = False,
    no_sa2: Annotated[bool, typer.Option("--no-sa2", help="Ablation: turn SA-II off.")] = False,
    no_cross: Annotated[
        bool,
        typer.Option("--no-cross", help="Ablation: turn cross-attention control off."),
    ] = False,
    seed: Annotated[
        int | None,
        typer.Option(
            "--seed",
            help="Seed torch's generator. Editing is deterministic DDIM (eta 0) from the "
            "inversion's latent, so today this changes nothing; recorded in edit.json.",
            show_default=False,
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Replace an existing edit of the same --name made with other settings, or "
            "redo an up-to-date one.",
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
    """Edit the inverted video with a new prompt (stage 2: dual-path sampling with self- and
    cross-attention control). Writes edits/NAME/ (latents, frames, edit.json). The model is the
    inversion's; --model etc. are only checked against it."""
    from videodirector_cli.project.store import Project
    from videodirector_cli.stages.edit import EditRequest, run_edit

    output = make_output(json_output, quiet)
    request = EditRequest(
        prompt=prompt,
        name=name,
        inversion=inversion,
        tau_s=tau_s,
        tau_c=tau_c,
        sa2_layers=sa2_layers,
        mode=mode,
        reweight=list(reweight or []),
        blend=blend,
        blend_dilate=blend_dilate,
        mask=mask,
        target=target,
        sa1=not no_sa1,
        sa2=not no_sa2,
        cross=not no_cross,
        seed=seed,
        model=model,
        motion_adapter=motion_adapter,
        vae=vae,
        device=device,
        dtype=dtype,
        force=force,
    )
    outcome = run_edit(Project.find(project), request, output)
    output.result(outcome.data, outcome.human)


def register(app: typer.Typer) -> None:
    app.command("edit")(edit)
