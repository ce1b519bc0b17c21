"""The toy model's training script (toy.train and its stages): every stage runs, resumes without
redoing a step (and lands on the weights an uninterrupted run reaches), refuses bad options with
one line before writing anything, trains on cached latents, and exports the EMA weights."""

from __future__ import annotations

import argparse
import itertools
import json

import pytest
import torch

from videodirector_cli.toy import configs, latents, train, vocab, world
from videodirector_cli.toy.train_denoiser import (
    DenoiserSettings,
    DenoiserTrainer,
    zero_motion_outputs,
)
from videodirector_cli.toy.training import (
    Ema,
    RunSettings,
    Runtime,
    add_options,
    cosine_lr,
    settings_from,
)

TINY = [
    "--vae-steps", "2", "--vae-batch", "4",
    "--train-seeds", "12",
    "--image-steps", "2", "--image-batch", "4",
    "--video-steps", "1", "--video-batch", "1",
    "--threads", "1", "--log-every", "1",
]  # fmt: skip


def run(tmp_path, *extra: str) -> int:
    out = tmp_path / "out"
    return train.main(["--out", str(out), "--work", str(tmp_path / "work"), *TINY, *extra])


def ckpt(tmp_path, stage: str) -> dict:
    return torch.load(tmp_path / "work" / f"{stage}.pt", weights_only=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny run of every stage, shared by the tests that only read its results."""
    tmp_path = tmp_path_factory.mktemp("trained")
    assert run(tmp_path, "--loss-png", str(tmp_path / "loss.png")) == 0
    return tmp_path


def test_all_stages_export_the_ema_weights_as_a_folder_that_loads(trained):
    from diffusers import AnimateDiffPipeline

    tmp_path = trained
    work = tmp_path / "work"
    for name in ("vae.pt", "latents.pt", "image.pt", "video.pt", "loss.png", "progress.json"):
        assert (work / name).is_file(), name
    assert (tmp_path / "loss.png").stat().st_size > 1000
    progress = json.loads((work / "progress.json").read_text())
    assert progress["vae"]["steps"] == 2 and progress["latents"]["clips"] == 12
    assert progress["image"]["steps"] == 2 and progress["video"]["steps"] == 1
    assert progress["video"]["cpu_seconds"] > 0

    pipe = AnimateDiffPipeline.from_pretrained(tmp_path / "out")
    assert pipe.vae.config.scaling_factor != 1.0  # set from the trained latents
    video = ckpt(tmp_path, "video")
    key = "up_blocks.2.attentions.0.transformer_blocks.0.attn2.to_k.weight"
    exported = pipe.unet.state_dict()[key].to(torch.float16)
    ema = video["ema"]["shadow"][f"model.{key}"].to(torch.float16)
    assert torch.equal(exported, ema)  # the export holds the EMA, not the raw weights
    assert not torch.equal(ema, video["model"][key].to(torch.float16))
    assert set(pipe.unet.state_dict()) == set(video["model"])


def test_a_stopped_run_resumes_where_it_stopped_and_lands_on_the_same_weights(tmp_path):
    """--max-minutes stops after the first step (as Ctrl-C / SIGTERM would, through the same
    save); the rerun does the remaining steps only, and the weights equal an uninterrupted
    run's: data and noise are functions of (seed, stage, step)."""
    stages = ["--stages", "vae,latents,image", "--image-steps", "3"]
    first = tmp_path / "a"
    assert run(first, *stages, "--max-minutes", "0.00001") == train.PAUSED
    assert ckpt(first, "vae")["step"] == 1
    assert run(first, *stages, "--max-minutes", "0.00001") == train.PAUSED
    assert ckpt(first, "vae")["step"] == 2 and ckpt(first, "image")["step"] == 1
    assert run(first, *stages) == 0
    resumed = ckpt(first, "image")
    assert resumed["step"] == 3 and len(resumed["losses"]) == 3

    straight = tmp_path / "b"
    assert run(straight, *stages) == 0
    direct = ckpt(straight, "image")
    assert resumed["losses"] == direct["losses"]
    for key, value in direct["model"].items():
        assert torch.equal(value, resumed["model"][key]), key

    # a rerun with the same budget does no step; a larger budget continues from there
    assert run(first, *stages) == 0
    assert ckpt(first, "image")["step"] == 3
    assert run(first, "--stages", "image", "--image-steps", "4") == 0
    assert ckpt(first, "image")["step"] == 4


def test_bad_options_stop_with_one_line_before_any_work(tmp_path):
    for extra, words in (
        (["--image-batch", "0"], "--image-batch must be at least 1"),
        (["--vae-batch", "6"], "multiple of 4"),
        (["--stages", "vae,bogus"], "unknown stage(s): bogus"),
        (["--train-seeds", str(world.HELDOUT_SEED_START)], "held-out seed range"),
        (["--p-uncond", "1.5"], "--p-uncond must be between 0 and 1"),
        (["--word-id-weight", "-1"], "--word-id-weight must not be negative"),
        (["--video-text-lr=-1e-4"], "--video-text-lr must not be negative"),
        (["--device", "tpu"], "--device must be cpu, cuda or auto"),
        (["--precision", "fp8"], "--precision must be"),
        (["--stages", "video"], "the image stage has not finished (0/2 steps)"),
        (["--init-from", str(tmp_path)], "not a diffusers pipeline folder"),
    ):
        with pytest.raises(SystemExit) as exc:
            run(tmp_path, *extra)
        assert words in str(exc.value), (extra, exc.value)
        assert "\n" not in str(exc.value)
    with pytest.raises(SystemExit) as exc:
        train.main(["--work", str(tmp_path / "work"), "--stages", "export"])
    assert "--out" in str(exc.value)
    assert not (tmp_path / "work").exists()


def test_cuda_is_refused_with_one_line_when_there_is_none(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="no CUDA device"):
        run(tmp_path, "--device", "cuda")
    assert not (tmp_path / "work").exists()


def test_bf16_autocast_runs_the_same_steps_on_the_cpu(tmp_path):
    """The --device cuda path's precision (bf16 autocast, float32 weights and loss), on the CPU."""
    assert run(tmp_path, "--stages", "vae,latents,image", "--precision", "bf16") == 0
    image = ckpt(tmp_path, "image")
    assert image["step"] == 2 and all(torch.isfinite(torch.tensor(image["losses"])))
    assert all(v.dtype == torch.float32 for v in image["model"].values())


def _pool_and_trainer(tmp_path, **kw) -> tuple[latents.LatentPool, DenoiserTrainer]:
    from transformers import CLIPTokenizer

    vocab.save_tokenizer_files(tmp_path / "tok")
    tok = CLIPTokenizer.from_pretrained(str(tmp_path / "tok"))
    vae = configs.build_vae().eval()
    pool, _ = latents.load_or_build(
        tmp_path / "latents.pt", vae, tok, latents.PoolSettings(train_seeds=6)
    )
    rt = Runtime(RunSettings())
    trainer = DenoiserTrainer(DenoiserSettings(**kw), rt, 0, tok, tmp_path)
    trainer.pool = pool
    return pool, trainer


def test_latent_cache_holds_the_encoded_pool_and_follows_the_vae(tmp_path):
    from transformers import CLIPTokenizer

    vocab.save_tokenizer_files(tmp_path / "tok")
    tok = CLIPTokenizer.from_pretrained(str(tmp_path / "tok"))
    torch.manual_seed(0)
    vae = configs.build_vae().eval()
    vae.register_to_config(scaling_factor=0.5)
    settings = latents.PoolSettings(train_seeds=3)
    path = tmp_path / "latents.pt"
    pool, record = latents.load_or_build(path, vae, tok, settings)
    assert pool.latents.shape == (3, configs.LATENT_CHANNELS, configs.NUM_FRAMES, 16, 16)
    assert pool.latents.dtype == torch.float16
    clip = world.make_clip(1, p_second=settings.p_second, split="train")
    assert pool.captions[1] == clip.caption
    x = torch.from_numpy(clip.frames).float().permute(0, 3, 1, 2) / 127.5 - 1
    with torch.no_grad():
        expected = vae.encode(x).latent_dist.mean * 0.5  # posterior mean x scaling_factor
    torch.testing.assert_close(
        pool.latents[1].float(), expected.permute(1, 0, 2, 3), atol=2e-3, rtol=2e-3
    )
    # the same VAE reads the cache back (same record); another VAE encodes again
    before = path.stat().st_mtime_ns
    again, record2 = latents.load_or_build(path, vae, tok, settings)
    assert record2 == record and path.stat().st_mtime_ns == before
    assert torch.equal(again.latents, pool.latents)
    with torch.no_grad():
        vae.encoder.conv_in.weight.mul_(1.1)
    _, record3 = latents.load_or_build(path, vae, tok, settings)
    assert record3["fingerprint"] != record["fingerprint"]


def test_batches_are_a_function_of_seed_and_step_and_drop_captions(tmp_path):
    pool, a = _pool_and_trainer(tmp_path, image_batch=6, video_batch=2, p_uncond=0.3)
    z1, ids1 = a.image_batch(7)
    z2, ids2 = a.image_batch(7)
    _, ids3 = a.image_batch(8)
    assert torch.equal(ids1, ids2) and torch.equal(z1, z2)
    assert not torch.equal(z1, a.image_batch(8)[0]) or not torch.equal(ids1, ids3)
    assert z1.shape == (6, configs.LATENT_CHANNELS, 16, 16) and z1.dtype == torch.float32
    v, vids = a.video_batch(0)
    assert v.shape == (2, configs.LATENT_CHANNELS, configs.NUM_FRAMES, 16, 16)
    assert vids.shape == (2, 77)
    # caption dropout: about p_uncond of the captions are the empty prompt
    rows = torch.cat([a.image_batch(step)[1] for step in range(40)])
    dropped = (rows == pool.empty_ids).all(dim=1).float().mean().item()
    assert 0.2 < dropped < 0.4


def test_min_snr_weights_the_nearly_clean_timesteps_down(tmp_path):
    _, trainer = _pool_and_trainer(tmp_path, min_snr=5.0)
    z0 = torch.zeros(512, 4, 2, 2)
    _, _, t, w = trainer.noised("image", z0, 0)
    assert ((w > 0) & (w <= 1)).all()
    assert torch.allclose(w[t > 500], torch.ones_like(w[t > 500]))  # low SNR: weight 1
    ac = trainer.noise_scheduler.alphas_cumprod[t]
    snr = ac / (1 - ac)
    torch.testing.assert_close(w, torch.minimum(snr, torch.tensor(5.0)) / snr)
    assert (w[t < 20] < 0.1).all()  # nearly clean: SNR far above 5
    _, _, _, plain = _pool_and_trainer(tmp_path / "p", min_snr=0.0)[1].noised("image", z0, 0)
    assert torch.equal(plain, torch.ones(512))


def test_a_share_of_video_clips_is_drawn_from_the_noisiest_timesteps(tmp_path):
    z0 = torch.zeros(2000, 4, 1, 2, 2)
    _, uniform = _pool_and_trainer(tmp_path, video_noisy_frac=0.0)
    _, half = _pool_and_trainer(tmp_path / "h", video_noisy_frac=0.5)
    _, _, t_uniform, _ = uniform.noised("video", z0, 3)
    _, _, t_half, _ = half.noised("video", z0, 3)
    share = lambda t: float((t >= 700).float().mean())  # noqa: E731
    assert 0.25 < share(t_uniform) < 0.35  # uniform over 0-999
    assert 0.6 < share(t_half) < 0.7  # half redrawn from 700-999: 0.5 + 0.5 * 0.3
    assert t_half.max() < 1000 and t_half.min() >= 0
    _, _, t_image, _ = half.noised("image", z0[:, :, 0], 3)
    assert 0.25 < share(t_image) < 0.35  # the image stage keeps the uniform draw


def test_ema_follows_the_weights_slowly_and_copies_back():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 3)
    ema = Ema({"m": model}, decay=0.9)
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    for _ in range(200):
        ema.update({"m": model})
    shadow = ema.shadow["m.weight"]
    assert torch.allclose(shadow, model.weight, atol=1e-6)  # converged to the constant weights
    ema2 = Ema({"m": model}, decay=0.9)
    with torch.no_grad():
        model.weight.copy_(start)
    ema2.update({"m": model})  # first update: decay (1 + 1) / (10 + 1)
    d = 2 / 11
    torch.testing.assert_close(ema2.shadow["m.weight"], d * (start + 1) + (1 - d) * start)
    other = torch.nn.Linear(3, 3)
    ema.copy_to({"m": other})
    assert torch.equal(other.weight, shadow)


def test_fresh_motion_modules_start_as_the_identity():
    """With zeroed output projections the motion UNet predicts, frame by frame, exactly what the
    image UNet it was built from predicts: the video stage starts from the image model."""
    from diffusers import MotionAdapter, UNet2DConditionModel, UNetMotionModel

    torch.manual_seed(0)
    unet2d = UNet2DConditionModel(**configs.UNET_CONFIG).eval()
    adapter = MotionAdapter(**configs.MOTION_CONFIG)
    assert zero_motion_outputs(adapter) == 9  # one per motion module
    unet = UNetMotionModel.from_unet2d(unet2d, adapter).eval()
    frames = 4
    z = torch.randn(1, configs.LATENT_CHANNELS, frames, 16, 16)
    emb = torch.randn(1, 77, configs.TEXT_HIDDEN)
    t = torch.tensor([500])
    with torch.no_grad():
        video = unet(z, t, encoder_hidden_states=emb.repeat(frames, 1, 1)).sample
        per_frame = unet2d(
            z[0].permute(1, 0, 2, 3),
            t.repeat(frames),
            encoder_hidden_states=emb.repeat(frames, 1, 1),
        ).sample
    torch.testing.assert_close(video[0].permute(1, 0, 2, 3), per_frame, atol=1e-5, rtol=1e-4)
    # a fresh adapter without zeroing does change the prediction
    unet_raw = UNetMotionModel.from_unet2d(unet2d, MotionAdapter(**configs.MOTION_CONFIG)).eval()
    with torch.no_grad():
        raw = unet_raw(z, t, encoder_hidden_states=emb.repeat(frames, 1, 1)).sample
    assert not torch.allclose(raw, video, atol=1e-3)


def test_init_from_a_pipeline_fine_tunes_its_weights(trained, tmp_path):
    """A fresh machine (a GPU lent for minutes) continues from a pipeline folder: its VAE counts
    as trained, the video stage starts from its UNet and text encoder."""
    from diffusers import UNetMotionModel

    work2 = tmp_path / "work2"
    folder = trained / "out"
    args = ["--init-from", str(folder), "--work", str(work2), *TINY, "--stages", "video"]
    assert train.main([*args, "--video-steps", "0"]) == 0
    shipped = UNetMotionModel.from_pretrained(folder, subfolder="unet").state_dict()
    seeded = torch.load(work2 / "video.pt", weights_only=False)
    assert seeded["step"] == 0 and set(seeded["model"]) == set(shipped)
    assert all(torch.equal(seeded["model"][k], v.float()) for k, v in shipped.items())
    assert torch.load(work2 / "vae.pt", weights_only=False)["scaled"]
    assert train.main([*args, "--video-steps", "1"]) == 0  # the same command continues
    assert torch.load(work2 / "video.pt", weights_only=False)["step"] == 1
    with pytest.raises(SystemExit, match="needs a new work folder"):
        train.main(
            ["--init-from", str(folder), "--work", str(trained / "work"), "--stages", "video"]
        )


def test_learning_rate_warms_up_then_decays_to_a_tenth():
    base = 1e-3
    assert cosine_lr(0, 100, base, warmup=10) == base / 10
    assert cosine_lr(9, 100, base, warmup=10) == base
    assert abs(cosine_lr(100, 100, base, warmup=10) - base / 10) < 1e-12
    lrs = [cosine_lr(s, 100, base, warmup=10) for s in range(10, 101)]
    assert all(a >= b for a, b in itertools.pairwise(lrs))


def test_every_setting_is_one_option_with_its_default_and_help():
    for cls in train.SETTINGS:
        parser = argparse.ArgumentParser()
        add_options(parser, cls)
        args = parser.parse_args([])
        assert settings_from(args, cls) == cls()
        for action in parser._actions[1:]:
            assert action.help and "default" in action.help, action.dest


def test_help_lists_every_option_once_with_its_default(capsys):
    """--help used to crash on a '%' in a help text (argparse formats help with %)."""
    with pytest.raises(SystemExit) as stop:
        train.parse_args(["--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    assert "--min-snr" in text and "(default: 5.0)" in text
    assert "(default: 5.0) (default" not in text


def test_word_probe_pulls_apart_two_words_the_encoder_merged(tmp_path):
    """The video stage's word-identity loss: two words with one input embedding give one
    output; training the encoder on the probe's loss makes them readable apart again."""
    from transformers import CLIPTokenizer

    from videodirector_cli.toy.train_denoiser import WordProbe

    torch.manual_seed(0)
    vocab.save_tokenizer_files(tmp_path / "tok")
    tok = CLIPTokenizer.from_pretrained(str(tmp_path / "tok"))
    te = configs.build_text_encoder(len(tok), tok.bos_token_id, tok.eos_token_id, tok.pad_token_id)
    left, right = (tok(w).input_ids[1] for w in ("left", "right"))
    table = te.get_input_embeddings().weight
    with torch.no_grad():
        table[right] = table[left]
    captions = [world.caption_for("red", "circle", d, "black") for d in world.DIRECTIONS]
    ids = latents.token_ids(tok, captions)
    pair = ids[:2]  # "moving left", "moving right"

    def gap() -> float:
        with torch.no_grad():
            out = te(pair)[0]
        return float((out[0] - out[1]).norm() / out[0].norm())

    assert gap() < 1e-5
    probe = WordProbe(configs.TEXT_HIDDEN, len(tok), tok.pad_token_id)
    with torch.no_grad():
        hidden = te(ids)[0]
        unfitted = probe.loss(hidden, ids).item()
    fitted = probe.fit(hidden, ids, steps=200)
    assert fitted < 0.5 * unfitted
    assert fitted == pytest.approx(probe.loss(hidden, ids).item())
    opt = torch.optim.AdamW(list(te.parameters()) + list(probe.parameters()), lr=3e-3)
    for _ in range(60):
        loss = probe.loss(te(ids)[0], ids)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert gap() > 0.02
    with torch.no_grad():
        read = probe.head(te(pair)[0][:, 5]).argmax(-1)
    assert read.tolist() == [left, right]


def test_video_stage_with_the_word_loss_checkpoints_its_probe_and_exports_without_it(
    trained, tmp_path, capsys
):
    from safetensors.torch import load_file

    assert run(tmp_path, "--word-id-weight", "0.1", "--video-text-lr", "1e-4") == 0
    assert "word probe fitted to the text encoder" in capsys.readouterr().err
    video = ckpt(tmp_path, "video")
    assert set(video["word_probe"]) == {"head.weight", "head.bias"}
    assert len(video["opt"]["param_groups"]) == 3
    assert [g["lr"] for g in video["opt"]["param_groups"]][2] > 0
    # the export is the same pipeline as without the probe: same components, same text-encoder keys
    out, plain = tmp_path / "out", trained / "out"
    assert json.loads((out / "model_index.json").read_text()) == json.loads(
        (plain / "model_index.json").read_text()
    )
    te_keys = set(load_file(out / "text_encoder" / "model.safetensors"))
    assert te_keys == set(load_file(plain / "text_encoder" / "model.safetensors"))
    assert not any("head" in k for k in te_keys)
    probe_before = video["word_probe"]["head.weight"].clone()
    args = ["--word-id-weight", "0.1", "--stages", "video", "--video-steps", "2"]
    assert run(tmp_path, *args) == 0
    assert "word probe fitted" not in capsys.readouterr().err  # resumed with the saved probe
    video = ckpt(tmp_path, "video")
    assert video["step"] == 2
    assert not torch.equal(video["word_probe"]["head.weight"], probe_before)
