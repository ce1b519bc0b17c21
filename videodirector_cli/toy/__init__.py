"""A tiny AnimateDiff-architecture model trained on a procedural world of moving shapes.

* ``toy.world``: the clip generator (captions, exact masks, seeds).
* ``toy.vocab``: the toy vocabulary and its CLIP tokenizer.
* ``toy.configs``: the tiny VAE / CLIP text encoder / UNet + MotionAdapter configurations.
* ``toy.train``: the training script (``python -m videodirector_cli.toy.train``); its stages in
  ``toy.train_vae``, ``toy.latents``, ``toy.train_denoiser``, ``toy.export``, shared pieces in
  ``toy.training``.
* ``toy.scorer``: scores a clip against its prompt's words without a model.
* ``toy.check``: the automatic learned-ness check (``python -m videodirector_cli.toy.check``).
* ``toy.grid``: contact sheets of clips.
* ``WEIGHTS_DIR``: the trained diffusers AnimateDiff pipeline folder shipped in the package.
"""

from __future__ import annotations

from pathlib import Path

#: The shipped diffusers pipeline folder (``AnimateDiffPipeline.from_pretrained(WEIGHTS_DIR)``).
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"

__all__ = ["WEIGHTS_DIR"]
