"""What each stage's inputs hash to right now: the single source of truth for staleness.

Every stage records ``inputs`` with these keys, each taken from here at the time it ran:
- "frames": the frames stage's output hash;
- "masks": the masks stage's output hash, or "none" when the stage used no mask;
- "prompt": hash of the project's source prompt;
- "inversion:<key>": that inversion's output hash;
- "edit:<name>": that edit's output hash.
"""

from __future__ import annotations

from videodirector_cli.project.fingerprint import hash_params
from videodirector_cli.project.manifest import NO_MASK, Manifest

__all__ = ["NO_MASK", "current_inputs", "inputs_for"]


def current_inputs(manifest: Manifest) -> dict[str, str]:
    found: dict[str, str] = {}
    if manifest.frames is not None and manifest.frames.status == "done":
        found["frames"] = manifest.frames.outputs.get("frames", "")
    if manifest.masks is not None and manifest.masks.status == "done":
        found["masks"] = manifest.masks.outputs.get("masks", "")
    found["prompt"] = hash_params(manifest.prompt)
    for key, record in manifest.inversions.items():
        if record.status == "done":
            found[f"inversion:{key}"] = record.outputs.get("inversion", "")
    for name, record in manifest.edits.items():
        if record.status == "done":
            found[f"edit:{name}"] = record.outputs.get("edit", "")
    return found


def inputs_for(manifest: Manifest, names: list[str], use_masks: bool = True) -> dict[str, str]:
    """The ``inputs`` dict a stage records; "masks" becomes NO_MASK when masks are not used."""
    now = current_inputs(manifest)
    chosen: dict[str, str] = {}
    for name in names:
        if name == "masks" and (not use_masks or "masks" not in now):
            chosen[name] = NO_MASK
        else:
            chosen[name] = now.get(name, "")
    return chosen
