"""Configurations of the tiny AnimateDiff-architecture model (diffusers / transformers classes).

Shapes at a glance (64x64 RGB frames, 16 frames):

* VAE (``AutoencoderKL``): 3 levels -> downsampling x4, latents (4, 16, 16).
* Text encoder (``CLIPTextModel``): hidden 64, 3 layers, 77 positions.
* UNet (``UNet2DConditionModel`` + ``MotionAdapter`` -> ``UNetMotionModel``), mirroring SD1.5's
  layout at 3 levels: down_blocks = (CrossAttnDown 16x16, CrossAttnDown 8x8, Down 4x4),
  mid block with cross-attention at 4x4, up_blocks = (Up 4x4, CrossAttnUp 8x8, CrossAttnUp 16x16).
  So ``up_blocks.1`` and ``up_blocks.2`` both hold spatial transformers (``attn1`` self-attention,
  ``attn2`` cross-attention) and motion modules, as in AnimateDiff where the method's guidance
  reads those blocks.
* Scheduler: AnimateDiff's DDIM (linear betas 0.00085 - 0.012).
"""

from __future__ import annotations

from videodirector_cli.diffusion.schedule import make_ddim_scheduler

from .vocab import MAX_LENGTH

SAMPLE_SIZE = 64
NUM_FRAMES = 16
LATENT_CHANNELS = 4
TEXT_HIDDEN = 64

VAE_CONFIG = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 3,
    up_block_types=("UpDecoderBlock2D",) * 3,
    block_out_channels=(16, 32, 64),
    layers_per_block=1,
    latent_channels=LATENT_CHANNELS,
    # one group: GroupNorm with few channels per group erases the colour of flat regions
    # (2 channels per group keep one bit each), and the decoder's last norm feeds conv_out
    norm_num_groups=1,
    sample_size=SAMPLE_SIZE,
    scaling_factor=1.0,  # replaced after VAE training by 1 / std of the latents
)

UNET_BLOCKS = (32, 64, 96)

UNET_CONFIG = dict(
    sample_size=SAMPLE_SIZE // 4,
    in_channels=LATENT_CHANNELS,
    out_channels=LATENT_CHANNELS,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    block_out_channels=UNET_BLOCKS,
    layers_per_block=1,
    cross_attention_dim=TEXT_HIDDEN,
    # diffusers reads this as the number of heads per block (its legacy name): 16 channels per
    # head. 8 heads of 4 channels made CPU attention the largest cost of a training step.
    attention_head_dim=(2, 4, 6),
    norm_num_groups=4,
)

MOTION_CONFIG = dict(
    block_out_channels=UNET_BLOCKS,
    motion_layers_per_block=1,
    motion_mid_block_layers_per_block=1,
    motion_num_attention_heads=4,
    motion_norm_num_groups=8,
    motion_max_seq_length=32,
    use_motion_mid_block=False,
)


def text_config(vocab_size: int) -> dict:
    return dict(
        vocab_size=vocab_size,
        hidden_size=TEXT_HIDDEN,
        intermediate_size=4 * TEXT_HIDDEN,
        num_hidden_layers=3,
        num_attention_heads=4,
        max_position_embeddings=MAX_LENGTH,
        hidden_act="quick_gelu",
        projection_dim=TEXT_HIDDEN,
    )


def build_vae():
    """A fresh ``AutoencoderKL`` whose posterior starts nearly deterministic (log-variance bias
    -6): a tiny KL-VAE trained for minutes otherwise keeps a unit-variance posterior that
    drowns the latents in noise (blurry, grey reconstructions)."""
    import torch
    from diffusers import AutoencoderKL

    vae = AutoencoderKL(**VAE_CONFIG)
    conv = vae.encoder.conv_out
    with torch.no_grad():
        conv.weight[LATENT_CHANNELS:] *= 0.1
        conv.bias[LATENT_CHANNELS:] = -6.0
    return vae


def build_text_encoder(vocab_size: int, bos_token_id: int, eos_token_id: int, pad_token_id: int):
    """A fresh ``CLIPTextModel``; pass the tokenizer's special-token ids (the pooled output
    is read at the first ``eos_token_id``)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    cfg = CLIPTextConfig(
        **text_config(vocab_size),
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
    )
    return CLIPTextModel(cfg)


def build_scheduler():
    return make_ddim_scheduler()


def build_train_scheduler():
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="linear",
        clip_sample=False,
    )
