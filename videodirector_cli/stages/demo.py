"""`vdir demo`: the whole pipeline, offline on a CPU, on a clip the toy world generates.

init -> mask (the generator's exact mask) -> invert -> two edits (a colour word swap and a shape
word swap) -> render --compare, all with the project's own small model. Each step is the real
stage function, so a demo folder is an ordinary project and running the demo again resumes or
finds everything up to date. The one stage module that imports the others: it is the pipeline.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from videodirector_cli.errors import UsageError
from videodirector_cli.output import Output
from videodirector_cli.settings.demo import DemoRequest
from videodirector_cli.stages.outcome import StageOutcome

TOY_CAVEAT = (
    "note: the toy model follows background, colour and shape words (100 %, 100 % and 90 % right "
    "on held-out prompts) but not yet motion words (25 %; docs/toy-model.md): real edits need "
    "the real AnimateDiff weights"
)


def _write_sample(request: DemoRequest, sample_dir: Path, output: Output):
    """The generated clip as an mp4 plus its exact masks as PNGs; returns the clip."""
    from videodirector_cli.media.encode import write_mp4
    from videodirector_cli.media.frames import write_mask
    from videodirector_cli.toy import world

    clip = world.make_clip_from(
        request.colour, request.shape, request.direction, request.background, seed=request.seed
    )
    video = sample_dir / "clip.mp4"
    if not video.exists():
        write_mp4(video, clip.frames, fps=8, crf=0)
        for index, mask in enumerate(clip.masks):
            write_mask(sample_dir / "masks" / f"{index:05d}.png", mask)
        output.info(f"generated a sample clip: {clip.caption} ({video})")
    return clip


def _swap_word(caption: str, old: str, new: str) -> str:
    words = caption.split()
    return " ".join(new if word == old else word for word in words)


def run_demo(folder: Path, request: DemoRequest, output: Output) -> StageOutcome:
    """Like init, the demo makes its project, so it takes the folder (made if missing)."""
    from videodirector_cli.project.store import Project, is_project_dir
    from videodirector_cli.settings.edit import EditRequest
    from videodirector_cli.settings.init import InitRequest
    from videodirector_cli.settings.invert import InvertRequest, InvertSettings, NullTextSettings
    from videodirector_cli.settings.mask import MaskRequest
    from videodirector_cli.settings.model import ModelChoice
    from videodirector_cli.settings.render import RenderRequest
    from videodirector_cli.stages.edit import run_edit
    from videodirector_cli.stages.init import run_init
    from videodirector_cli.stages.invert import run_invert
    from videodirector_cli.stages.mask import run_mask
    from videodirector_cli.stages.render import run_render

    request.check()
    started = time.perf_counter()
    project_dir = folder / "project"
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{folder} is a file, not a folder")
    if folder.is_dir() and any(folder.iterdir()) and not (folder / "sample").is_dir():
        raise UsageError(
            f"{folder} is not empty and not a vdir demo folder", hint="choose a new folder"
        )
    clip = _write_sample(request, folder / "sample", output)
    timings: dict[str, float] = {}
    model = ModelChoice(model=request.model, device=request.device)

    def timed(stage: str, since: float) -> float:
        now = time.perf_counter()
        timings[stage] = round(now - since, 2)
        return now

    mark = time.perf_counter()
    if not is_project_dir(project_dir):
        run_init(
            project_dir,
            InitRequest(
                video=folder / "sample" / "clip.mp4",
                frames=clip.num_frames,
                size=f"{clip.frames.shape[2]}x{clip.frames.shape[1]}",
                prompt=clip.caption,
            ),
            output,
        )
    project = Project.open(project_dir)
    mark = timed("init", mark)
    if project.manifest.masks is None or project.manifest.masks.status != "done":
        run_mask(project, MaskRequest(from_dir=folder / "sample" / "masks", ellipse=False), output)
    mark = timed("mask", mark)
    settings = InvertSettings(
        steps=request.steps, null_text=NullTextSettings(inner_steps=request.inner_steps)
    )
    inversion = run_invert(
        Project.open(project_dir), InvertRequest(settings=settings, model=model), output
    )
    mark = timed("invert", mark)
    edits = {
        "colour": _swap_word(clip.caption, request.colour, request.new_colour),
        "shape": _swap_word(clip.caption, request.shape, request.new_shape),
    }
    for name, prompt in edits.items():
        output.info(f"edit '{name}': {prompt}")
        run_edit(
            Project.open(project_dir),
            EditRequest(prompt=prompt, name=name, model=model),
            output,
        )
    mark = timed("edit", mark)
    rendered = run_render(
        Project.open(project_dir), RenderRequest(names=tuple(edits), compare=True), output
    )
    timed("render", mark)
    renders = project.paths.renders_dir
    videos = {name: str(renders / f"{name}_compare.mp4") for name in edits}
    result = {
        "folder": str(folder),
        "project": str(project_dir),
        "source_prompt": clip.caption,
        "edits": edits,
        "inversion": inversion.key,
        "videos": videos,
        "sheets": {name: str(renders / f"{name}_compare.png") for name in edits},
        "seconds": round(time.perf_counter() - started, 1),
        "stage_seconds": timings,
        "render": rendered.data,
        "caveat": TOY_CAVEAT,
    }
    return StageOutcome(result, summary(result))


def summary(result: dict[str, Any]) -> str:
    lines = [
        f"demo finished in {result['seconds']} s; project: {result['project']}",
        f"source: {result['source_prompt']}",
    ]
    for name, prompt in result["edits"].items():
        lines.append(f"  {name}: '{prompt}' -> {result['videos'][name]}")
    lines.append("(source | mask | edit side by side; the .png next to each is a contact sheet)")
    lines.append(TOY_CAVEAT)
    return "\n".join(lines)
