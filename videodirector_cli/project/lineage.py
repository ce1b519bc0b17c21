"""What each stage's inputs hash to right now: the single source of truth for staleness.

Every stage records ``inputs`` with these keys, each taken from here at the time it ran:
- "frames": the frames stage's output hash;
- "masks": the masks stage's output hash, or "none" when the stage used no mask;
- "prompt": hash of the project's source prompt;
- "inversion:<key>": that inversion's output hash;
- "edit:<name>": that edit's output hash;
- "source": the source video's hash (only the frames stage reads it).
"""

from __future__ import annotations

from videodirector_cli.project.fingerprint import hash_params
from videodirector_cli.project.manifest import NO_MASK, Manifest

__all__ = ["NO_MASK", "current_inputs", "describe", "inputs_for"]


def current_inputs(manifest: Manifest) -> dict[str, str]:
    found: dict[str, str] = {}
    if manifest.source is not None:
        found["source"] = manifest.source.sha256
    if manifest.frames is not None and manifest.frames.status == "done":
        found["frames"] = manifest.frames.outputs.get("frames", "")
    if manifest.masks is not None and manifest.masks.status == "done":
        found["masks"] = manifest.masks.outputs.get("masks", "")
    found["prompt"] = hash_params(manifest.prompt)
    for key, inversion in manifest.inversions.items():
        if inversion.status == "done":
            found[f"inversion:{key}"] = inversion.outputs.get("inversion", "")
    for name, edit in manifest.edits.items():
        if edit.status == "done":
            found[f"edit:{name}"] = edit.outputs.get("edit", "")
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


def describe(name: str) -> str:
    """An input's name as a person reads it: 'masks', 'source prompt', 'inversion 3148df104add'."""
    kind, _, which = name.partition(":")
    words = {"prompt": "source prompt", "source": "source video"}
    if which:
        return f"{kind} {which[:12] if kind == 'inversion' else which}"
    return words.get(kind, kind)
