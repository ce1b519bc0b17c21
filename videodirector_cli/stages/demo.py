"""`vdir demo`: the whole pipeline, offline on a CPU, on a clip the toy world generates.

init -> mask (the generator's exact mask) -> invert -> two edits (a colour word swap and a shape
word swap) -> render --compare, all with the project's own small model. Each step is the real
stage function, so a demo folder is an ordinary project and running the demo again resumes or
finds everything up to date.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from videodirector_cli.errors import UsageError
from videodirector_cli.output import Output

TOY_CAVEAT = (
    "note: the toy model follows background and colour words (75 % and 42 % right on held-out "
    "prompts) but not shape or motion words (docs/toy-model.md): the colour edit shows the "
    "method at work, the shape edit shows the model's limits"
)

DEMO_SEED = 1_000_007
"""A held-out seed (>= toy.world.HELDOUT_SEED_START): the model never saw this clip."""


@dataclass
class DemoRequest:
    folder: Path = Path("vdir-demo")
    # a combination whose colour edit the shipped toy model gets right (docs/cli.md)
    colour: str = "red"
    shape: str = "circle"
    direction: str = "down"
    background: str = "green"
    new_colour: str = "white"
    new_shape: str = "square"
    steps: int = 15
    """Fewer DDIM steps than the paper's 50 so that the demo fits in about 3 CPU minutes."""
    inner_steps: int = 3
    model: str = "toy"
    device: str = "auto"
    seed: int = DEMO_SEED

    def check(self) -> None:
        from videodirector_cli.toy import world

        for value, options, what in (
            (self.colour, world.COLOURS, "colour"),
            (self.new_colour, world.COLOURS, "colour"),
            (self.shape, world.SHAPES, "shape"),
            (self.new_shape, world.SHAPES, "shape"),
            (self.direction, world.DIRECTIONS, "direction"),
            (self.background, world.BACKGROUNDS, "background"),
        ):
            if value not in options:
                raise UsageError(f"unknown {what} {value!r}; choose from {', '.join(options)}")
        if self.new_colour == self.colour or self.new_shape == self.shape:
            raise UsageError("the edits must change the colour and the shape")
        if self.steps < 2 or self.inner_steps < 0:
            raise UsageError("--steps must be at least 2 and --inner-steps at least 0")


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


def run_demo(request: DemoRequest, output: Output) -> dict[str, Any]:
    from videodirector_cli.project.store import Project, is_project_dir
    from videodirector_cli.stages.edit import EditRequest, run_edit
    from videodirector_cli.stages.init import InitRequest, init_project
    from videodirector_cli.stages.invert import InvertRequest, run_invert
    from videodirector_cli.stages.mask import MaskRequest, run_mask
    from videodirector_cli.stages.render import RenderRequest, run_render

    request.check()
    started = time.perf_counter()
    folder = request.folder
    project_dir = folder / "project"
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{folder} is a file, not a folder")
    if folder.is_dir() and any(folder.iterdir()) and not (folder / "sample").is_dir():
        raise UsageError(
            f"{folder} is not empty and not a vdir demo folder", hint="choose a new folder"
        )
    clip = _write_sample(request, folder / "sample", output)
    timings: dict[str, float] = {}

    def timed(stage: str, since: float) -> float:
        now = time.perf_counter()
        timings[stage] = round(now - since, 2)
        return now

    mark = time.perf_counter()
    if not is_project_dir(project_dir):
        init_project(
            InitRequest(
                video=folder / "sample" / "clip.mp4",
                folder=project_dir,
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
    inversion = run_invert(
        project_dir,
        InvertRequest(
            steps=request.steps,
            inner_steps=request.inner_steps,
            model=request.model,
            device=request.device,
        ),
        output,
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
            EditRequest(prompt=prompt, name=name, model=request.model, device=request.device),
            output,
        )
    mark = timed("edit", mark)
    rendered = run_render(
        Project.open(project_dir), RenderRequest(names=list(edits), compare=True), output
    )
    timed("render", mark)
    renders = project.paths.renders_dir
    videos = {name: str(renders / f"{name}_compare.mp4") for name in edits}
    return {
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
