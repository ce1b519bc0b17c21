"""Read manifests of schema 1 (vdir 0.1): their params were untyped dicts, some values twice.

``upgrade(raw)`` turns the parsed JSON of a schema-1 manifest into schema 2 before validation.
Each record's params become the typed params of project/params.py such that a schema-1 record
equals the record the current code writes for the same request: an inversion or edit made by
vdir 0.1 is still recognised as up to date (its key, the name of its folder, is kept).

A record written by an earlier 0.1 build that lacks a key this needs becomes a 'failed'
record that says so (the rest of the project keeps working). What schema 1 did not record is
filled in from what it did: an inversion's --mask option from
whether it used masks, its --no-report from whether it has a report; the STDG settings of a
--no-stdg inversion (not recorded, and without effect) are the defaults. The guidance scale an
edit recorded again beside its inversion's is dropped, as are STDG's top-k (always 1) and the
repeated null-text guidance scale.
"""

from __future__ import annotations

from typing import Any

VERSION = 1
STDG_SETTINGS = ("blocks", "block_weights", "eta_f", "eta_b", "zeta_f", "zeta_b", "target")


def upgrade(raw: dict[str, Any]) -> dict[str, Any]:
    data = dict(raw)
    if data.get("frames") is not None:
        data["frames"] = _record(data["frames"], _frames)
    if data.get("masks") is not None:
        data["masks"] = _record(data["masks"], _masks)
    for section, convert in (("inversions", _inversion), ("edits", _edit), ("renders", _render)):
        data[section] = {k: _record(r, convert) for k, r in (data.get(section) or {}).items()}
    data["schema_version"] = 2
    return data


def _record(record: dict[str, Any], convert) -> dict[str, Any]:
    """One record upgraded. A record an earlier 0.1 build wrote without a key this needs is kept
    as 'failed', saying so: the project stays readable and the stage runs again."""
    record = dict(record)
    params = dict(record.get("params") or {})
    try:
        record["params"] = convert(params, record)
    except KeyError as missing:
        record["params"] = _FALLBACK[convert](params)
        record["status"] = "failed"
        record["message"] = (
            f"made by an earlier vdir 0.1 that did not record {missing}; run the command again"
        )
    return record


def _frames(params: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    return params  # the same keys


def _masks(params: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    if "from" in params:
        params["from_dir"] = params.pop("from")
    return params


def _inversion(params: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    null_text = params.get("null_text") or {}
    stdg = params.get("stdg")
    spec = params.get("model_spec") or {}
    uses_mask = bool(params.get("mask"))
    settings: dict[str, Any] = {
        "steps": params["steps"],
        "guidance_scale": params["guidance_scale"],
        "null_text": {
            "mode": null_text["null_mode"],
            "inner_steps": null_text["inner_steps"],
            "learning_rate": null_text["learning_rate"],
            "early_stop": null_text["early_stop"],
            "early_stop_slope": null_text["early_stop_slope"],
        },
        "stdg": {"enabled": False}
        if stdg is None
        else {"enabled": True, **{k: stdg[k] for k in STDG_SETTINGS}},
        "mask": "auto" if uses_mask else "none",
        "seed": params["seed"],
        "report": (record.get("metrics") or {}).get("report") is not None,
    }
    return {
        "prompt": params["prompt"],
        "settings": settings,
        "uses_mask": uses_mask,
        "model": {
            "model": spec.get("model"),
            "motion_adapter": spec.get("motion_adapter"),
            "vae": spec.get("vae"),
            "device": params.get("device", "auto"),
            "dtype": params.get("dtype", "auto"),
        },
        "algorithm_version": params["algorithm_version"],
        "model_identity": params.get("model_identity"),
        "key": params.get("key"),
    }


EDIT_SETTINGS = ("tau_s", "tau_c", "sa2_layers", "mode", "reweight", "blend")
EDIT_SWITCHES = ("target", "sa1", "sa2", "cross", "sa1_max_tokens")


def _edit(params: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    settings = {k: params[k] for k in (*EDIT_SETTINGS, *EDIT_SWITCHES)}
    settings["blend_dilate"] = params["blend_dilate_px"]
    settings["mask"] = "auto" if params["mask"] == "project" else "none"
    return {
        "prompt": params["prompt"],
        "source_prompt": params["source_prompt"],
        "inversion": params["inversion"],
        "settings": settings,
    }


def _render(params: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    return params  # the same keys


def _inversion_fallback(params: dict[str, Any]) -> dict[str, Any]:
    spec = params.get("model_spec") or {}
    return {
        "prompt": str(params.get("prompt") or ""),
        "settings": {},
        "uses_mask": bool(params.get("mask")),
        "model": {k: spec.get(k) for k in ("model", "motion_adapter", "vae")},
        "algorithm_version": 0,  # matches no current request
        "model_identity": params.get("model_identity"),
        "key": params.get("key"),
    }


def _edit_fallback(params: dict[str, Any]) -> dict[str, Any]:
    keys = ("prompt", "source_prompt", "inversion")
    return {**{k: str(params.get(k) or "") for k in keys}, "settings": {}}


_FALLBACK = {
    _frames: lambda p: p,
    _masks: lambda p: {"method": str(p.get("method", "")), "ellipse": bool(p.get("ellipse"))},
    _inversion: _inversion_fallback,
    _edit: _edit_fallback,
    _render: lambda p: {"compare": False, "crf": 0, "fps": 0.0, "out": ""},
}
