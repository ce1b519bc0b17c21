"""The real SD1.5 + AnimateDiff v3 architecture end to end through the CLI, on the CPU.

Random weights with the shapes of the shipped configs, saved as local diffusers folders (an
SD1.5 pipeline folder and a MotionAdapter folder), then ``vdir init`` of a 16-frame 64 x 64
clip, ``vdir invert --steps 2 --inner-steps 1`` and ``vdir edit`` of 2 steps, each as a user
runs it (a fresh ``python -m videodirector_cli`` process). At this shape the layer names,
STDG's blocks (12 temporal layers in up_blocks.1 and up_blocks.2), SA-I's token limit and
SA-II's decoder layers are the real ones. Needs about 7 GB of RAM and several minutes.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _helpers_media import make_video

from videodirector_cli.diffusion.architecture import CONFIG_DIR, SD15_ANIMATEDIFF, named

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _save_random_real_shape(root: Path) -> tuple[Path, Path]:
    """SD1.5 folder (UNet2DConditionModel, VAE, CLIP text encoder, a byte-level tokenizer,
    DDIM scheduler) and an AnimateDiff v3 MotionAdapter folder, random weights, fp32."""
    import torch
    from diffusers import AutoencoderKL, MotionAdapter, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from videodirector_cli.diffusion.schedule import make_ddim_scheduler
    from videodirector_cli.diffusion.tiny import build_tiny_tokenizer

    torch.manual_seed(0)
    base, adapter_dir = root / "sd15-random", root / "animatediff-v3-random"
    sd15 = CONFIG_DIR / "sd15"
    unet = UNet2DConditionModel.from_config(json.loads((sd15 / "unet/config.json").read_text()))
    unet.save_pretrained(base / "unet")
    del unet
    adapter_config = json.loads((CONFIG_DIR / "animatediff-v3/config.json").read_text())
    adapter = MotionAdapter.from_config(adapter_config)
    adapter.save_pretrained(adapter_dir)
    del adapter
    vae = AutoencoderKL.from_config(json.loads((sd15 / "vae/config.json").read_text()))
    vae.save_pretrained(base / "vae")
    text = CLIPTextModel(CLIPTextConfig.from_pretrained(sd15 / "text_encoder"))
    text.save_pretrained(base / "text_encoder")
    del vae, text
    build_tiny_tokenizer().save_pretrained(base / "tokenizer")
    make_ddim_scheduler().save_pretrained(base / "scheduler")
    (base / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    gc.collect()
    return base, adapter_dir


def vdir(*args: str, timeout: int = 3600) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "videodirector_cli", *args, "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    print(f"vdir {args[0]}: {time.perf_counter() - began:.0f} s")
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_invert_and_edit_on_the_real_architecture(tmp_path):
    base, adapter = _save_random_real_shape(tmp_path)
    video = make_video(tmp_path / "clip.mp4", frames=16, width=64, height=64)
    project = tmp_path / "project"
    vdir("init", str(video), str(project), "--frames", "16", "--size", "64", "--prompt", "a bear")
    model = ["--model", str(base), "--motion-adapter", str(adapter), "--project", str(project)]
    inverted = vdir("invert", "--steps", "2", "--inner-steps", "1", *model)
    assert inverted["steps"] == 2 and len(inverted["losses"]) == 2
    by_purpose = inverted["passes"]["by_purpose"]
    assert by_purpose["stdg"] > 0 and by_purpose["conditional"] == 2
    edited = vdir("edit", "a tiger", "--tau-s", "0.5", *model)
    applied = edited.get("controls_applied") or edited.get("applied")
    # step 0: SA-I on all 16 spatial self-attention layers (8 x 8 latents: every layer has
    # at most 32 x 32 tokens) and cross-attention control on all 16 cross-attention layers;
    # step 1: SA-II on the 9 decoder layers
    assert applied == {"sa1": 16, "cross": 16, "sa2": 9}, applied

    arch = named(SD15_ANIMATEDIFF)
    unet = arch.build_unet()
    from videodirector_cli.diffusion.attention.layers import layers_of

    stdg_layers = layers_of(unet, "temporal", ("up_blocks.1", "up_blocks.2"))
    assert len(stdg_layers) == 12
