"""Byte-identical resume: step files written after a resume equal an uninterrupted run's byte
for byte (the safetensors header is written with sorted keys), not only tensor for tensor."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _helpers_invert import make_invert_project, tiny_model

from videodirector_cli.diffusion.trajectory import TrajectoryStep
from videodirector_cli.output import Output
from videodirector_cli.project.store import Project
from videodirector_cli.settings.invert import InvertRequest, InvertSettings, NullTextSettings
from videodirector_cli.settings.model import ModelChoice
from videodirector_cli.stages.inversion_files import InversionFiles
from videodirector_cli.stages.invert import run_invert


def _step() -> TrajectoryStep:
    generator = torch.Generator().manual_seed(0)
    return TrajectoryStep(
        step=3, timestep=401, null=torch.randn(2, 5, 8, generator=generator),
        latent=torch.randn(1, 4, 2, 4, 4, generator=generator),
        next_latent=torch.randn(1, 4, 2, 4, 4, generator=generator),
        guidance=torch.randn(1, 4, 2, 4, 4, generator=generator), loss=0.125, iterations=4,
        guidance_loss=0.5, guidance_ratio=0.25, guidance_ratio_mean=0.2, applied_ratio=0.1,
        bounded=True,
    )  # fmt: skip


def test_the_same_step_always_gives_the_same_bytes(tmp_path: Path) -> None:
    written = []
    for index in range(8):  # safetensors' hash-map order differs from one write to the next
        files = InversionFiles(tmp_path / str(index))
        files.save_step("k" * 32, _step())
        written.append(files.step_path(3).read_bytes())
    assert all(data == written[0] for data in written)
    loaded = InversionFiles(tmp_path / "0").load_step(3)
    assert torch.equal(loaded.null, _step().null) and loaded.bounded and loaded.iterations == 4


def test_a_resumed_inversion_is_byte_identical(tmp_path: Path) -> None:
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    for root in (whole, broken):
        make_invert_project(root, masks=True)
    settings = InvertSettings(steps=3, null_text=NullTextSettings(inner_steps=2), report=False)
    request = InvertRequest(settings=settings, model=ModelChoice(model="tiny"))
    quiet = Output(mode="quiet")
    done = run_invert(Project.open(whole), request, quiet, model=tiny_model())

    def interrupt(result) -> None:
        if result.step == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_invert(Project.open(broken), request, quiet, model=tiny_model(), on_step=interrupt)
    resumed = run_invert(Project.open(broken), request, quiet, model=tiny_model())
    assert resumed.key == done.key and resumed.data["resumed_from"] == 2

    def files(root: Path) -> dict[str, bytes]:
        folder = Project.open(root).paths.inversion_dir(done.key)
        return {
            str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*.safetensors"))
        }

    a, b = files(whole), files(broken)
    assert sorted(a) == [
        "pivots.safetensors",
        *[f"steps/step_{i:04d}.safetensors" for i in range(3)],
    ]
    assert a == b
    record_a = Project.open(whole).manifest.inversions[done.key]
    record_b = Project.open(broken).manifest.inversions[done.key]
    assert record_a.outputs["inversion"] == record_b.outputs["inversion"]
