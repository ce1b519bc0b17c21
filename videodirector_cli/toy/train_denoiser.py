"""Stages "image" and "video" of the toy training: the text encoder and the denoising UNet.

AnimateDiff's recipe, scaled down: first an image model (``UNet2DConditionModel`` + the
``CLIPTextModel``) learns colours, shapes and backgrounds from many captions per step, one frame
of each clip; then a ``MotionAdapter`` is added (``UNetMotionModel.from_unet2d``, built from the
image stage's EMA weights) and the whole model trains on 16-frame clips. The motion modules
start as the identity (output projections zeroed, as AnimateDiff does), so the video stage
begins with the image model's samples instead of noise.

Both stages read the cached latents (``toy.latents``), never the VAE; drop ``p_uncond`` of the
captions to "" for classifier-free guidance; weigh each sample's noise-prediction error by
min(SNR, ``min_snr``) / SNR (Min-SNR weighting: the nearly clean timesteps, which teach little
about layout and text, stop dominating the gradient); keep an EMA of the weights for sampling
and export; and checkpoint to their own file (``image.pt``, ``video.pt``).

Word identity (video stage, ``--word-id-weight``): a single frame cannot tell "moving left" from
"moving right", so the image stage teaches the text encoder nothing about motion words, and it
maps them to nearly the same output (3 % apart at their own position, against 100 % for two
colours; the UNet's noise prediction then differs by 1e-4 of its norm between motion words). A
linear probe that must read every caption token back from the encoder's output keeps each word
recoverable, the property a pretrained CLIP text encoder brings to AnimateDiff; its loss joins
the denoising loss in one backward pass. The probe is training-only, never exported.

Noisy timesteps (video stage, ``--video-noisy-frac``): where an object goes is decided in the
first, noisiest sampling steps, but there the noise-prediction loss sees an error in the clean
clip only scaled by the SNR (about 0.005 at t = 980), so a uniform draw of t teaches motion
words little; drawing a share of the clips from the noisiest 30 % of timesteps gives them more
of the gradient.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from . import configs
from .latents import LatentPool
from .training import (
    Checkpointer,
    Ema,
    Runtime,
    StageClock,
    atomic_save,
    copy_ema_weights,
    cosine_lr,
    load_checkpoint,
    log,
    option,
    rng_for,
    torch_generator,
)

STREAMS = {"image": 5, "video": 6}  # random stream per stage (the VAE stage uses 1)


@dataclass
class DenoiserSettings:
    """The image and video stages."""

    image_steps: int = option(3000, "image-model steps")
    image_batch: int = option(64, "frames per image step, each from a different clip")
    image_lr: float = option(1e-3, "image stage peak learning rate")
    video_steps: int = option(6000, "video-model steps")
    video_batch: int = option(4, "16-frame clips per video step")
    video_lr: float = option(1e-3, "video stage peak learning rate of the motion modules")
    video_spatial_lr: float = option(3e-4, "video stage: spatial UNet (and text encoder)")
    p_uncond: float = option(0.1, "caption dropout to the empty prompt")
    ema_decay: float = option(0.999, "EMA decay of the weights that sampling and export use")
    min_snr: float = option(5.0, "Min-SNR weighting gamma (0: plain MSE)")
    video_text_lr: float = option(0.0, "video stage: text encoder rate (0: --video-spatial-lr)")
    word_id_weight: float = option(
        0.0, "video stage: weight of the word-identity loss on the text encoder (0: off)"
    )
    video_noisy_frac: float = option(
        0.0, "video stage: share of clips whose timestep is drawn from the noisiest 30 %"
    )


class WordProbe(torch.nn.Module):
    """Reads each caption token back from the text encoder's output at its own position."""

    def __init__(self, hidden: int, vocab_size: int, pad_token_id: int):
        super().__init__()
        self.head = torch.nn.Linear(hidden, vocab_size)
        self.pad_token_id = pad_token_id

    def loss(self, hidden: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the token ids at every non-padding position."""
        keep = ids != self.pad_token_id
        return torch.nn.functional.cross_entropy(self.head(hidden[keep]).float(), ids[keep])

    def fit(self, hidden: torch.Tensor, ids: torch.Tensor, steps: int = 500) -> float:
        """Fit the head alone to fixed encoder outputs first: the words the encoder already
        keeps apart then cost almost nothing, and the joint loss pulls mostly on the merged ones (a
        random head would make the encoder rebuild every word's output, undoing what the UNet
        learned from it)."""
        opt = torch.optim.AdamW(self.parameters(), lr=1e-2)
        hidden = hidden.detach()
        with torch.enable_grad():
            for _ in range(steps):
                loss = self.loss(hidden, ids)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        with torch.no_grad():
            return float(self.loss(hidden, ids))


def zero_motion_outputs(adapter: torch.nn.Module) -> int:
    """Zero every motion module's output projection so the module starts as the identity."""
    n = 0
    for name, mod in adapter.named_modules():
        if name.endswith("proj_out") and isinstance(mod, torch.nn.Linear):
            torch.nn.init.zeros_(mod.weight)
            if mod.bias is not None:
                torch.nn.init.zeros_(mod.bias)
            n += 1
    return n


class StageState:
    """Step, clock and loss history of one denoiser stage, readable without building a model."""

    def __init__(self, ckpt: dict | None):
        ckpt = ckpt or {"step": 0, "cpu_seconds": 0.0, "wall_seconds": 0.0, "losses": []}
        self.step: int = ckpt["step"]
        self.clock = StageClock(ckpt["cpu_seconds"], ckpt["wall_seconds"])
        self.losses: list[float] = list(ckpt["losses"])


class DenoiserTrainer:
    """Trains text encoder + UNet on cached latents; holds both stages' checkpoints."""

    def __init__(self, settings: DenoiserSettings, runtime: Runtime, seed: int, tokenizer, work):
        self.s = settings
        self.rt = runtime
        self.seed = seed
        self.tokenizer = tokenizer
        self.work = Path(work)
        self.noise_scheduler = configs.build_train_scheduler()
        self.pool: LatentPool | None = None
        self.state = {
            stage: StageState(load_checkpoint(self.path(stage), mmap=True)) for stage in STREAMS
        }

    def path(self, stage: str) -> Path:
        return self.work / f"{stage}.pt"

    def total(self, stage: str) -> int:
        return self.s.image_steps if stage == "image" else self.s.video_steps

    def done(self, stage: str) -> bool:
        return self.state[stage].step >= self.total(stage)

    def video_may_start(self) -> bool:
        """The image stage has finished, or ``video.pt`` exists (begun, or seeded by
        ``--init-from``)."""
        return self.done("image") or self.path("video").exists()

    def seed_video(self, unet, text_encoder) -> None:
        """Start ``video.pt`` from given weights (step 0, EMA = the weights, no optimiser state):
        the video stage then fine-tunes them."""
        modules = {"model": unet, "text_encoder": text_encoder}
        self.state["video"] = StageState(None)
        atomic_save(
            {
                "model": unet.state_dict(),
                "text_encoder": text_encoder.state_dict(),
                "ema": Ema(modules, self.s.ema_decay).state_dict(),
                "step": 0,
                "cpu_seconds": 0.0,
                "wall_seconds": 0.0,
                "losses": [],
            },
            self.path("video"),
        )

    # -- data ------------------------------------------------------------------------------
    def _captions(self, rng, index: torch.Tensor) -> torch.Tensor:
        assert self.pool is not None
        ids = self.pool.ids[index].clone()
        ids[torch.from_numpy(rng.random(len(index)) < self.s.p_uncond)] = self.pool.empty_ids
        return ids

    def image_batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, h, w) latents of one random frame from each of B clips, and caption ids."""
        assert self.pool is not None
        rng = rng_for(self.seed, STREAMS["image"], step)
        clips = torch.from_numpy(rng.choice(len(self.pool), size=self.s.image_batch))
        frames = torch.from_numpy(rng.integers(configs.NUM_FRAMES, size=self.s.image_batch))
        z = self.pool.latents[clips, :, frames].float()
        return z, self._captions(rng, clips)

    def video_batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, F, h, w) latents of B clips, and caption ids."""
        assert self.pool is not None
        rng = rng_for(self.seed, STREAMS["video"], step)
        clips = torch.from_numpy(rng.choice(len(self.pool), size=self.s.video_batch))
        return self.pool.latents[clips].float(), self._captions(rng, clips)

    def noised(self, stage: str, z0: torch.Tensor, step: int):
        """(z_t, noise, t, Min-SNR weight per sample), drawn on the CPU."""
        g = torch_generator(self.seed, STREAMS[stage], step)
        noise = torch.randn(z0.shape, generator=g)
        n_t = self.noise_scheduler.config.num_train_timesteps
        t = torch.randint(0, n_t, (z0.shape[0],), generator=g)
        if stage == "video" and self.s.video_noisy_frac > 0:
            noisy = torch.rand(z0.shape[0], generator=g) < self.s.video_noisy_frac
            high = torch.randint(int(0.7 * n_t), n_t, (z0.shape[0],), generator=g)
            t = torch.where(noisy, high, t)
        zt = self.noise_scheduler.add_noise(z0, noise, t)
        ac = self.noise_scheduler.alphas_cumprod[t]
        snr = ac / (1 - ac)
        weight = snr.clamp(max=self.s.min_snr) / snr if self.s.min_snr > 0 else torch.ones_like(t)
        return zt, noise, t, weight.float()

    # -- models ----------------------------------------------------------------------------
    def fresh_text_encoder(self):
        torch.manual_seed(self.seed)
        tk = self.tokenizer
        return configs.build_text_encoder(
            len(tk), tk.bos_token_id, tk.eos_token_id, tk.pad_token_id
        )

    def image_models(self, ckpt: dict | None, ema_weights: bool = False):
        """(UNet2DConditionModel, text encoder), from ``ckpt`` (its EMA if ``ema_weights``)."""
        from diffusers import UNet2DConditionModel

        torch.manual_seed(self.seed)
        unet2d: Any = UNet2DConditionModel(**configs.UNET_CONFIG)
        te = self.fresh_text_encoder()
        if ckpt is not None:
            unet2d.load_state_dict(ckpt["model"])
            te.load_state_dict(ckpt["text_encoder"])
            if ema_weights:
                copy_ema_weights({"model": unet2d, "text_encoder": te}, ckpt["ema"])
        return unet2d, te

    def video_models(self, ckpt: dict | None):
        """(UNetMotionModel, text encoder): from ``video.pt`` once the stage has begun, else the
        image stage's EMA weights plus a fresh adapter whose modules start as the identity."""
        from diffusers import MotionAdapter, UNetMotionModel

        unet2d, te = self.image_models(
            None if ckpt else load_checkpoint(self.path("image")), ema_weights=ckpt is None
        )
        torch.manual_seed(self.seed + 1)
        adapter: Any = MotionAdapter(**configs.MOTION_CONFIG)
        zero_motion_outputs(adapter)
        unet: Any = UNetMotionModel.from_unet2d(unet2d, adapter)
        if ckpt is not None:
            unet.load_state_dict(ckpt["model"])
            te.load_state_dict(ckpt["text_encoder"])
        return unet, te

    def exported_models(self):
        """The video stage's EMA weights: (UNetMotionModel, text encoder), eval mode, CPU."""
        ckpt = load_checkpoint(self.path("video"))
        if ckpt is None:
            raise SystemExit("nothing to export: the video stage has not started")
        unet, te = self.video_models(ckpt)
        copy_ema_weights({"model": unet, "text_encoder": te}, ckpt["ema"])
        return unet.eval(), te.eval()

    # -- training --------------------------------------------------------------------------
    def train_image(self, pool: LatentPool) -> None:
        self.pool = pool
        ckpt = load_checkpoint(self.path("image"))
        unet2d, te = self.image_models(ckpt)
        params = list(unet2d.parameters()) + list(te.parameters())
        opt = torch.optim.AdamW(params, lr=self.s.image_lr, weight_decay=1e-2)
        self._loop("image", unet2d, te, opt, [self.s.image_lr], self.image_batch, ckpt)

    def train_video(self, pool: LatentPool) -> None:
        self.pool = pool
        ckpt = load_checkpoint(self.path("video"))
        unet, te = self.video_models(ckpt)
        motion = [p for n, p in unet.named_parameters() if "motion_modules" in n]
        motion_ids = {id(p) for p in motion}
        spatial = [p for p in unet.parameters() if id(p) not in motion_ids]
        s = self.s
        text_lr = s.video_text_lr or s.video_spatial_lr
        probe = self.word_probe(ckpt, te) if s.word_id_weight > 0 else None
        text = list(te.parameters()) + (list(probe.parameters()) if probe else [])
        opt = torch.optim.AdamW(
            [
                {"params": motion, "lr": s.video_lr},
                {"params": spatial, "lr": s.video_spatial_lr},
                {"params": text, "lr": text_lr},
            ],
            weight_decay=1e-2,
        )
        lrs = [s.video_lr, s.video_spatial_lr, text_lr]
        self._loop("video", unet, te, opt, lrs, self.video_batch, ckpt, probe)

    def word_probe(self, ckpt: dict | None, te) -> WordProbe:
        """The video stage's probe: from ``ckpt`` if it holds one, else fitted to the text
        encoder's outputs for the pool's first 2 048 captions."""
        assert self.pool is not None
        torch.manual_seed(self.seed + 2)
        tk = self.tokenizer
        probe = WordProbe(configs.TEXT_HIDDEN, len(tk), tk.pad_token_id)
        if ckpt is not None and "word_probe" in ckpt:
            probe.load_state_dict(ckpt["word_probe"])
            return probe
        ids = self.pool.ids[:2048]
        with torch.no_grad():
            hidden = te.eval()(ids)[0]
        log(f"word probe fitted to the text encoder: loss {probe.fit(hidden, ids):.3f}")
        return probe

    def _save(self, stage: str, model, te, ema: Ema, opt, probe=None) -> None:
        st = self.state[stage]
        extra = {"word_probe": probe.state_dict()} if probe is not None else {}
        atomic_save(
            {
                **extra,
                "model": {k: v.cpu() for k, v in model.state_dict().items()},
                "text_encoder": {k: v.cpu() for k, v in te.state_dict().items()},
                "ema": {**ema.state_dict(), "shadow": {k: v.cpu() for k, v in ema.shadow.items()}},
                "opt": opt.state_dict(),
                "step": st.step,
                "cpu_seconds": st.clock.cpu,
                "wall_seconds": st.clock.wall,
                "losses": st.losses,
            },
            self.path(stage),
        )

    def _loop(
        self, stage, model, te, opt, base_lrs, batch_fn, ckpt: dict | None, probe=None
    ) -> None:
        dev, s, st = self.rt.device, self.s, self.state[stage]
        total = self.total(stage)
        modules = {"model": model, "text_encoder": te}
        for m in modules.values():
            m.to(dev).train()
        ema = Ema(modules, s.ema_decay)
        if ckpt is not None:
            if "opt" in ckpt:  # absent in a video.pt seeded by --init-from
                if len(ckpt["opt"]["param_groups"]) == len(opt.param_groups):
                    opt.load_state_dict(ckpt["opt"])
                else:  # a video.pt from before the text encoder had its own group
                    log(f"{stage}.pt: optimiser groups changed, its moments start afresh")
            ema.load_state_dict(ckpt["ema"])
        ema.to(dev)
        if probe is not None:
            probe.to(dev).train()
        params = [p for g in opt.param_groups for p in g["params"]]
        warmup = min(100, total // 10 + 1)
        timer = Checkpointer(self.rt.settings.ckpt_minutes)
        every = self.rt.settings.log_every
        word_losses: list[float] = []
        try:
            with st.clock:
                while st.step < total:
                    z0, ids = batch_fn(st.step)
                    ids = ids.to(dev)
                    zt, noise, t, weight = self.noised(stage, z0, st.step)
                    for grp, base in zip(opt.param_groups, base_lrs):
                        grp["lr"] = cosine_lr(st.step, total, base, warmup)
                    with self.rt.autocast():
                        emb = te_out = te(ids)[0]
                        if z0.ndim == 5:  # one embedding per frame, as the pipeline does
                            emb = emb.repeat_interleave(z0.shape[2], dim=0)
                        pred = model(zt.to(dev), t.to(dev), encoder_hidden_states=emb).sample
                    err = (pred.float() - noise.to(dev)).pow(2).flatten(1).mean(1)
                    loss = (err * weight.to(dev)).mean()
                    if probe is not None:
                        word_loss = probe.loss(te_out, ids)
                        loss = loss + s.word_id_weight * word_loss
                        word_losses.append(word_loss.item())
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(params, 1.0)
                    opt.step()
                    ema.update(modules)
                    st.step += 1
                    st.losses.append(err.mean().item())
                    if st.step % every == 0 or st.step == total:
                        recent = sum(st.losses[-every:]) / min(every, len(st.losses))
                        words = word_losses[-every:]
                        word = f", word id {sum(words) / len(words):.3f}" if words else ""
                        log(
                            f"[{stage} {st.step}/{total}] eps mse {recent:.4f}{word} "
                            f"({st.clock.cpu_so_far() / 60:.1f} CPU min)"
                        )
                    if timer.due():
                        self._save(stage, model, te, ema, opt, probe)
                    if self.rt.out_of_time():
                        break
        finally:  # Ctrl-C / SIGTERM included: the next run resumes from here
            self._save(stage, model, te, ema, opt, probe)


def describe(trainer: DenoiserTrainer) -> dict[str, Any]:
    return {stage: {"steps": st.step, **st.clock.as_dict()} for stage, st in trainer.state.items()}
