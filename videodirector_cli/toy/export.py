"""Stage "export": the trained parts as a standard diffusers ``AnimateDiffPipeline`` folder."""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from . import configs


def export_pipeline(vae, text_encoder, tok_dir: Path, unet, out: Path) -> None:
    """Write the pipeline folder (fp16 safetensors) atomically: a temporary folder replaces
    ``out`` only once it is complete."""
    from diffusers import AnimateDiffPipeline, MotionAdapter
    from transformers import CLIPTokenizer

    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    unet = copy.deepcopy(unet).cpu().float().eval()
    adapter_dir = tmp.with_name(tmp.name + "-adapter")
    unet.save_motion_modules(str(adapter_dir))
    adapter = MotionAdapter.from_pretrained(str(adapter_dir))
    shutil.rmtree(adapter_dir)
    pipe = AnimateDiffPipeline(
        vae=copy.deepcopy(vae).cpu().float().eval(),
        text_encoder=copy.deepcopy(text_encoder).cpu().float().eval(),
        tokenizer=CLIPTokenizer.from_pretrained(str(tok_dir)),
        unet=unet,
        motion_adapter=adapter,
        scheduler=configs.build_scheduler(),
    )
    # fp16 on disk for the diffusers models (they load as float32 unless a torch_dtype is
    # given); the text encoder stays float32 because transformers loads weights in their saved
    # dtype, and a float16 prompt embedding would make the pipeline run its UNet in float16.
    parts: Any = pipe  # diffusers registers components as attributes at run time
    for m in (parts.vae, parts.unet, parts.motion_adapter):
        m.to(torch.float16)
    parts.save_pretrained(str(tmp), safe_serialization=True)
    _drop_machine_paths(tmp)
    # the slow-tokenizer files too (vocab.json + merges.txt), next to tokenizer.json
    for name in ("vocab.json", "merges.txt"):
        shutil.copyfile(Path(tok_dir) / name, tmp / "tokenizer" / name)
    for f in tmp.rglob("*"):
        if f.is_file():
            f.chmod(0o644)
    if out.exists():
        old = out.with_name(out.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old)
    else:
        os.replace(tmp, out)


def _drop_machine_paths(folder: Path) -> None:
    """diffusers writes the folder it loaded from as ``_name_or_path``: a path of this machine."""
    for config in folder.rglob("config.json"):
        data = json.loads(config.read_text(encoding="utf-8"))
        if data.pop("_name_or_path", None) is not None:
            config.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
