"""`vdir edit`: the edit folder, the manifest record, up-to-date re-runs and every bad input.

The inversion is written with the real on-disk format (InversionFiles); the model loader is
replaced by the cached tiny model so each test does not rebuild it.
"""

from __future__ import annotations

import json

import pytest
from _helpers_editing import SOURCE, fast_model_loader, make_project_with_inversion
from typer.testing import CliRunner

from videodirector_cli.cli.app import app
from videodirector_cli.errors import UsageError
from videodirector_cli.project.fingerprint import hash_files
from videodirector_cli.project.manifest import stage_state
from videodirector_cli.project.store import Project
from videodirector_cli.settings.edit import parse_reweight
from videodirector_cli.stages.edit_names import check_name, derive_name

TARGET = "a white tiger walking on rocks"


@pytest.fixture(autouse=True)
def tiny_loader(monkeypatch):
    monkeypatch.setattr("videodirector_cli.diffusion.loading.load_model", fast_model_loader)


def vdir(project_root, *args: str):
    return CliRunner().invoke(app, ["edit", *args, "--project", str(project_root)])


def flat(text: str) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(text.split())


def snapshot(root) -> dict[str, bytes]:
    """Every file of the project, for 'nothing changed' checks."""
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture
def edited(edited_project):
    """The session's project with one finished edit (conftest.py): read only."""
    return edited_project.root, edited_project.stored, edited_project.edit


def test_edit_writes_its_folder_and_manifest_record(edited):
    root, stored, data = edited
    assert data["name"] == "white-tiger" and data["up_to_date"] is False
    project = Project.open(root)
    record = project.manifest.edits["white-tiger"]
    assert record.status == "done"
    frames = [project.paths.edit_frame("white-tiger", i) for i in range(4)]
    assert all(f.is_file() for f in frames)
    assert record.outputs["edit"] == hash_files(frames)  # what vdir render verifies
    assert (project.paths.edit_dir("white-tiger") / "latents.safetensors").is_file()
    info = json.loads((project.paths.edit_dir("white-tiger") / "edit.json").read_text())
    assert info["params"]["settings"]["reweight"] == {"tiger": 2.0}
    assert info["params"]["settings"]["mask"] == "auto"  # the project's masks were read
    assert record.params.settings.reweight == {"tiger": 2.0}
    assert (
        record.inputs[f"inversion:{stored.key}"]
        == project.manifest.inversions[stored.key].outputs["inversion"]
    )
    assert record.inputs["masks"] == project.manifest.masks.outputs["masks"]
    # one batched UNet call (4 rows) per step
    assert record.metrics["passes"]["unet_calls"] == stored.steps
    assert record.metrics["passes"]["forward_equivalents"] == 4 * stored.steps
    assert not list(project.paths.edits_dir.glob(".tmp-*"))


def test_rerunning_an_up_to_date_edit_does_nothing(edited, monkeypatch):
    root, _, _ = edited

    def no_loading(spec, output=None):
        raise AssertionError("an up-to-date edit must not load the model")

    monkeypatch.setattr("videodirector_cli.diffusion.loading.load_model", no_loading)
    before = snapshot(root)
    result = vdir(root, TARGET, "--reweight", "tiger=2")
    assert result.exit_code == 0, result.output
    assert "white-tiger is up to date" in flat(result.output)
    assert snapshot(root) == before


def test_a_changed_inversion_makes_the_edit_stale(tmp_path):
    project, stored = make_project_with_inversion(tmp_path, steps=1)
    assert vdir(tmp_path, TARGET, "--name", "t").exit_code == 0
    with project.writing("test"):
        project.manifest.inversions[stored.key].outputs["inversion"] = "0" * 64
        project.save()
    from videodirector_cli.project import lineage

    manifest = Project.open(tmp_path).manifest
    state = stage_state(manifest.edits["t"], lineage.current_inputs(manifest), locked=False)
    assert state == "stale"


def test_edit_before_invert(tmp_path):
    from _helpers_project import frames_record

    project = Project.create(tmp_path)
    with project.writing("test"):
        project.manifest.frames = frames_record(4)
        project.save()
    before = snapshot(tmp_path)
    result = vdir(tmp_path, TARGET)
    assert result.exit_code == 4
    assert "no inversion" in flat(result.output) and "vdir invert" in flat(result.output)
    assert snapshot(tmp_path) == before


@pytest.fixture
def project_root(tmp_path):
    make_project_with_inversion(tmp_path, steps=1)
    return tmp_path


def assert_refused(root, args, code, *phrases):
    before = snapshot(root)
    result = vdir(root, *args)
    assert result.exit_code == code, result.output
    for phrase in phrases:
        assert phrase in flat(result.output), result.output
    assert snapshot(root) == before


def test_word_swap_between_different_word_counts(project_root):
    assert_refused(
        project_root,
        ["a big white tiger walking on rocks", "--mode", "replace"],
        2,
        "6 words",
        "7",
        "--mode refine",
    )


def test_reweight_word_not_in_the_prompt(project_root):
    assert_refused(project_root, [TARGET, "--reweight", "lion=2"], 2, "'lion' is not a word")
    assert_refused(project_root, [TARGET, "--reweight", "tiger"], 2, "WORD=VALUE")


def test_prompt_over_the_token_limit(project_root):
    long_prompt = " ".join(["tiger"] * 20)  # 120 character tokens in the tiny tokenizer
    assert_refused(project_root, [long_prompt], 2, "tokens")


def test_unknown_inversion_key(project_root):
    assert_refused(project_root, [TARGET, "--inversion", "abc123"], 2, "'abc123'", "kkkkkkkkkkkk")


def test_different_model_is_refused(tmp_path):
    make_project_with_inversion(tmp_path, steps=1, identity={"model": "builtin:tiny:seed=5"})
    assert_refused(tmp_path, [TARGET, "--model", "tiny"], 5, "another model")


def test_bad_sa2_layer_spec(project_root):
    assert_refused(project_root, [TARGET, "--sa2-layers", "up_blocks.7"], 2, "--sa2-layers")


def test_blend_without_masks(project_root):
    assert_refused(project_root, [TARGET, "--blend"], 2, "no mask")


def test_bad_names_are_refused(project_root):
    assert_refused(project_root, [TARGET, "--name", "../evil"], 2, "--name", "e.g. --name evil")
    assert_refused(project_root, [TARGET, "--name", "source"], 2, "not usable")


def test_existing_name_with_other_params_needs_force(project_root):
    result = vdir(project_root, TARGET, "--name", "tiger")
    assert result.exit_code == 0, result.output
    assert "nothing to mask out" in flat(result.output)  # no masks here: SA-II says so
    assert_refused(
        project_root, [TARGET, "--name", "tiger", "--tau-s", "0.6"], 2, "tau_s", "--force"
    )
    forced = vdir(project_root, TARGET, "--name", "tiger", "--tau-s", "0.6", "--force")
    assert forced.exit_code == 0, forced.output
    record = Project.open(project_root).manifest.edits["tiger"]
    assert record.params.settings.tau_s == 0.6 and record.status == "done"


def test_names():
    assert derive_name(SOURCE, TARGET) == "white-tiger"
    assert derive_name(SOURCE, SOURCE) == "a-brown-bear-walking-on-rocks"
    assert derive_name("a bear", "a Source") == "source-edit"
    assert check_name("tiger_2.v1") == "tiger_2.v1"
    for bad in ("a/b", "..", "a..b", ".hidden", "", "x" * 65):
        with pytest.raises(UsageError):
            check_name(bad)
    assert parse_reweight(["tiger=2", "white = 0.5"]) == {"tiger": 2.0, "white": 0.5}


def test_derived_names_take_the_next_free_suffix(tmp_path):
    from _helpers_project import edit_record

    from videodirector_cli.settings.edit import EditRequest
    from videodirector_cli.stages.edit import choose_name

    def record(tau_s: float):
        return edit_record(prompt=TARGET, source_prompt=SOURCE, tau_s=tau_s)

    project = Project.create(tmp_path)
    project.manifest.edits["white-tiger"] = record(0.4)
    request = EditRequest(prompt=TARGET)
    assert choose_name(project, request, record(0.5).params) == ("white-tiger-2", False)
    project.manifest.edits["white-tiger-2"] = record(0.5)
    # the same params find their edit again (its files are gone here, so it is not up to date)
    assert choose_name(project, request, record(0.5).params) == ("white-tiger-2", False)
    assert choose_name(project, request, record(0.6).params) == ("white-tiger-3", False)


def test_source_prompt_edit_of_a_vdir_invert_result_reproduces_its_reconstruction(tmp_path):
    """The whole chain on files: `vdir invert` (stage) -> `vdir edit` with the source prompt."""
    from safetensors.torch import load_file

    from videodirector_cli.output import Output
    from videodirector_cli.settings.invert import (
        InvertRequest,
        InvertSettings,
        NullTextSettings,
        STDGSettings,
    )
    from videodirector_cli.settings.model import ModelChoice
    from videodirector_cli.stages.inversion_files import InversionFiles
    from videodirector_cli.stages.invert import run_invert

    project, _ = make_project_with_inversion(tmp_path, steps=1, masks=True)
    settings = InvertSettings(
        steps=2,
        null_text=NullTextSettings(inner_steps=1),
        stdg=STDGSettings(enabled=False),
        report=False,
    )
    request = InvertRequest(settings=settings, model=ModelChoice(model="tiny"))
    key = run_invert(Project.open(tmp_path), request, Output(mode="quiet")).key
    result = vdir(tmp_path, SOURCE, "--mask", "none", "--name", "same")
    assert result.exit_code == 0, result.output
    project = Project.open(tmp_path)
    assert project.manifest.edits["same"].params.inversion == key
    stored = InversionFiles(project.paths.inversion_dir(key)).load()
    latents = load_file(str(project.paths.edit_dir("same") / "latents.safetensors"))["latents"]
    assert (latents - stored.next_latents[-1]).abs().max() <= 1e-4


def test_background_target_protects_the_object_with_blend(tmp_path):
    """--target background: the mask marks what must NOT change, so --blend keeps the object."""
    import torch
    from _helpers_editing import box_masks
    from safetensors.torch import load_file

    from videodirector_cli.diffusion.editing import blend_mask
    from videodirector_cli.project.paths import ProjectPaths

    _, stored = make_project_with_inversion(tmp_path, masks=True)
    result = vdir(tmp_path, TARGET, "--name", "bg", "--blend", "--target", "background", "--json")
    assert result.exit_code == 0, result.output
    latents = load_file(str(ProjectPaths(tmp_path).edit_dir("bg") / "latents.safetensors"))[
        "latents"
    ]
    edited_cells = blend_mask(~box_masks(frames=4), (16, 16), dilate=0).bool()
    edited_cells = edited_cells.expand_as(latents)
    reconstruction = stored.next_latents[-1]
    assert bool((~edited_cells).any())
    # cells wholly inside the object come from the reconstruction; the background was edited
    assert torch.equal(latents[~edited_cells], reconstruction[~edited_cells])
    assert (latents[edited_cells] - reconstruction[edited_cells]).abs().max() > 1e-3
    record = json.loads((ProjectPaths(tmp_path).edit_dir("bg") / "edit.json").read_text())
    assert "background" in json.dumps(record)


def test_bad_target_is_refused(project_root):
    before = snapshot(project_root)
    result = vdir(project_root, TARGET, "--target", "sky")
    assert result.exit_code == 2 and "--target" in flat(result.output)
    assert snapshot(project_root) == before
