"""Projects made by vdir 0.1 (manifest schema 1) keep working: read, recognised, upgraded.

``to_v1`` writes a project's manifest back in the layout vdir 0.1 wrote (untyped
params, the guidance scale twice, STDG's top-k); ``V1_SAMPLE`` holds records exactly as vdir 0.1
wrote them (copied from a manifest it made), and the first test proves ``to_v1`` writes that
layout. Then every command runs on such a project.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from _helpers_project import EDITED_EDIT, EDITED_INVERT, EDITED_NAME, copy_project
from _helpers_tiny import fast_model_loader
from typer.testing import CliRunner

from videodirector_cli.cli.app import app
from videodirector_cli.project import manifest_v1
from videodirector_cli.project.manifest import SCHEMA_VERSION, Manifest

V1_SAMPLE: dict[str, Any] = {
    "inversions": {
        "e8f74a6ec40f72f994a7703d7283af23": {
            "status": "done",
            "metrics": {"report": {"optimised": {"psnr": 7.97}}},
            "params": {
                "prompt": "a red ball rolling",
                "steps": 3,
                "guidance_scale": 7.5,
                "null_text": {
                    "guidance_scale": 7.5,
                    "null_mode": "per-frame",
                    "inner_steps": 2,
                    "learning_rate": 0.01,
                    "early_stop": 1e-05,
                    "early_stop_slope": 2e-05,
                },
                "stdg": {
                    "blocks": ["up_blocks.1", "up_blocks.2"],
                    "block_weights": [20000.0, 10000.0],
                    "eta_f": 0.5,
                    "eta_b": 0.5,
                    "zeta_f": 0.0,
                    "zeta_b": 0.5,
                    "target": "foreground",
                    "top_k": 1,
                },
                "mask": True,
                "seed": 0,
                "model_spec": {"model": "tiny", "motion_adapter": None, "vae": None},
                "device": "cpu",
                "dtype": "auto",
                "algorithm_version": 1,
                "model_identity": {"model": "builtin:tiny:seed=0"},
                "key": "e8f74a6ec40f72f994a7703d7283af23",
            },
        },
        "350bf86222288d24d894c8a6aadf6b15": {
            "status": "done",
            "metrics": {"report": None},
            "params": {
                "prompt": "a red ball rolling",
                "steps": 3,
                "guidance_scale": 7.5,
                "null_text": {
                    "guidance_scale": 7.5,
                    "null_mode": "shared",
                    "inner_steps": 1,
                    "learning_rate": 0.01,
                    "early_stop": 1e-05,
                    "early_stop_slope": 2e-05,
                },
                "stdg": None,
                "mask": True,
                "seed": 3,
                "model_spec": {"model": "tiny", "motion_adapter": None, "vae": None},
                "device": "cpu",
                "dtype": "auto",
                "algorithm_version": 1,
                "model_identity": {"model": "builtin:tiny:seed=0"},
                "key": "350bf86222288d24d894c8a6aadf6b15",
            },
        },
    },
    "edits": {
        "big": {
            "status": "done",
            "params": {
                "prompt": "a big blue ball rolling",
                "source_prompt": "a red ball rolling",
                "inversion": "e8f74a6ec40f72f994a7703d7283af23",
                "mode": "refine",
                "reweight": {"blue": 2.0},
                "tau_s": 0.5,
                "tau_c": 0.8,
                "sa1": True,
                "sa2": True,
                "cross": True,
                "sa2_layers": "decoder",
                "sa1_max_tokens": 1024,
                "guidance_scale": 7.5,
                "blend": True,
                "blend_dilate_px": 4,
                "mask": "project",
                "target": "foreground",
            },
        },
    },
    "masks": {
        "status": "done",
        "params": {"method": "import", "from": "my-masks", "ellipse": True},
    },
}
"""Records as vdir 0.1 wrote them (report numbers shortened; other record fields left out)."""


def to_v1(data: dict[str, Any]) -> dict[str, Any]:
    """A schema-2 manifest (parsed JSON) in vdir 0.1's layout."""
    old = copy.deepcopy(data)
    old["schema_version"] = 1
    if old.get("masks"):  # 0.1 wrote only the keys of the method used, "from" for --from
        params = {k: v for k, v in old["masks"]["params"].items() if v is not None}
        if "from_dir" in params:
            params["from"] = params.pop("from_dir")
        old["masks"]["params"] = params
    scales = {}
    for key, record in old["inversions"].items():
        record["params"] = _v1_inversion(record["params"])
        scales[key] = record["params"]["guidance_scale"]
    for record in old["edits"].values():
        record["params"] = _v1_edit(record["params"], scales[record["params"]["inversion"]])
    return old


def _v1_inversion(params: dict[str, Any]) -> dict[str, Any]:
    settings, model = params["settings"], params["model"]
    null_text, stdg = settings["null_text"], settings["stdg"]
    return {
        "prompt": params["prompt"],
        "steps": settings["steps"],
        "guidance_scale": settings["guidance_scale"],
        "null_text": {
            "guidance_scale": settings["guidance_scale"],
            "null_mode": null_text["mode"],
            **{k: v for k, v in null_text.items() if k != "mode"},
        },
        "stdg": {**{k: v for k, v in stdg.items() if k != "enabled"}, "top_k": 1}
        if stdg["enabled"]
        else None,
        "mask": params["uses_mask"],
        "seed": settings["seed"],
        "model_spec": {k: model[k] for k in ("model", "motion_adapter", "vae")},
        "device": model["device"],
        "dtype": model["dtype"],
        "algorithm_version": params["algorithm_version"],
        "model_identity": params["model_identity"],
        "key": params["key"],
    }


def _v1_edit(params: dict[str, Any], guidance_scale: float) -> dict[str, Any]:
    settings = dict(params["settings"])
    return {
        "prompt": params["prompt"],
        "source_prompt": params["source_prompt"],
        "inversion": params["inversion"],
        "guidance_scale": guidance_scale,
        "blend_dilate_px": settings.pop("blend_dilate"),
        "mask": "project" if settings.pop("mask") == "auto" else "none",
        **settings,
    }


def _upgraded_sample() -> dict[str, Any]:
    return manifest_v1.upgrade({"schema_version": 1, **copy.deepcopy(V1_SAMPLE)})


def test_to_v1_writes_the_layout_of_vdir_0_1():
    upgraded = _upgraded_sample()
    assert upgraded["schema_version"] == SCHEMA_VERSION
    back = to_v1(upgraded)
    for section in ("inversions", "edits"):
        for name, record in V1_SAMPLE[section].items():
            assert back[section][name]["params"] == record["params"], (section, name)
    assert back["masks"]["params"] == V1_SAMPLE["masks"]["params"]


def test_schema_1_records_become_typed_settings():
    upgraded = _upgraded_sample()
    inversions = {k: r["params"] for k, r in upgraded["inversions"].items()}
    full = inversions["e8f74a6ec40f72f994a7703d7283af23"]["settings"]
    assert full["guidance_scale"] == 7.5 and "guidance_scale" not in full["null_text"]
    assert full["stdg"]["enabled"] and "top_k" not in full["stdg"] and full["report"]
    plain = inversions["350bf86222288d24d894c8a6aadf6b15"]["settings"]
    assert plain["stdg"] == {"enabled": False} and plain["report"] is False
    edit = upgraded["edits"]["big"]["params"]
    assert edit["settings"]["blend_dilate"] == 4 and "guidance_scale" not in edit
    assert upgraded["masks"]["params"]["from_dir"] == "my-masks"


def vdir(root: Path, *args: str):
    return CliRunner().invoke(app, [*args, "-p", str(root)])


@pytest.fixture
def v1_project(edited_project, tmp_path: Path, monkeypatch) -> Path:
    """The session's edited project, rendered, with its manifest written as vdir 0.1 wrote it."""
    monkeypatch.setattr("videodirector_cli.diffusion.loading.load_model", fast_model_loader)
    root = copy_project(edited_project.root, tmp_path)
    rendered = vdir(root, "render", EDITED_NAME, "--compare", "--quiet")
    assert rendered.exit_code == 0, rendered.output
    manifest = root / "manifest.json"
    manifest.write_text(json.dumps(to_v1(json.loads(manifest.read_text())), indent=2))
    return root


def test_every_command_works_on_a_schema_1_project(v1_project: Path):
    manifest = v1_project / "manifest.json"
    written_by_0_1 = manifest.read_bytes()

    status = vdir(v1_project, "status", "--json")  # reads only: the file stays as it was
    assert status.exit_code == 0, status.output
    report = json.loads(status.stdout)
    assert {row["state"] for row in report["stages"]} == {"done"} and report["next"] is None
    assert manifest.read_bytes() == written_by_0_1

    invert = vdir(v1_project, *EDITED_INVERT, "--json")  # the 0.1 inversion is recognised
    assert invert.exit_code == 0 and json.loads(invert.stdout)["up_to_date"] is True

    edit = vdir(v1_project, *EDITED_EDIT, "--json")  # so is the 0.1 edit
    assert edit.exit_code == 0 and json.loads(edit.stdout)["up_to_date"] is True
    assert manifest.read_bytes() == written_by_0_1  # nothing to do, nothing written

    evaluated = vdir(v1_project, "eval", EDITED_NAME, "--json")
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout)["edits"][0]["mask"] == "project"

    render = vdir(v1_project, "render", EDITED_NAME, "--json")  # a write: the manifest is v2
    assert render.exit_code == 0, render.output
    upgraded = json.loads(manifest.read_text())
    assert upgraded["schema_version"] == SCHEMA_VERSION
    assert Manifest.model_validate(upgraded).edits[EDITED_NAME].params.settings.reweight == {
        "tiger": 2.0
    }
    again = vdir(v1_project, *EDITED_EDIT, "--json")
    assert again.exit_code == 0 and json.loads(again.stdout)["up_to_date"] is True


def test_a_record_of_an_earlier_0_1_build_reads_as_failed(v1_project: Path):
    """Params without a key this needs: that record is failed (saying so), the rest works."""
    manifest = v1_project / "manifest.json"
    data = json.loads(manifest.read_text())
    (edit,) = data["edits"].values()
    del edit["params"]["target"]  # edits recorded no --target before it existed
    manifest.write_text(json.dumps(data))
    status = vdir(v1_project, "status", "--json")
    assert status.exit_code == 0, status.output
    rows = {row["stage"]: row for row in json.loads(status.stdout)["stages"]}
    assert rows["inversion"]["state"] == "done" and rows["edit"]["state"] == "failed"
    assert "earlier vdir 0.1" in rows["edit"]["message"]
    again = vdir(v1_project, *EDITED_EDIT, "--json")  # the edit runs again
    assert again.exit_code == 0 and json.loads(again.stdout)["up_to_date"] is False


def test_a_damaged_schema_1_manifest_is_reported_not_replaced(v1_project: Path):
    manifest = v1_project / "manifest.json"
    data = json.loads(manifest.read_text())
    data["frames"]["status"] = 7
    manifest.write_text(json.dumps(data))
    before = manifest.read_bytes()
    result = vdir(v1_project, "status")
    assert result.exit_code == 6 and "damaged" in result.output
    assert manifest.read_bytes() == before
