"""The toy model's training script (toy.train, toy.train_denoiser): every stage runs, resumes
without redoing work, draws the same data for the same step, and exports a loadable folder."""

from __future__ import annotations

import itertools
import json

import torch

from videodirector_cli.toy import configs, train, vocab
from videodirector_cli.toy.train_denoiser import (
    DenoiserSettings,
    DenoiserTrainer,
    cosine_lr,
    zero_motion_outputs,
)

TINY = [
    "--vae-steps", "2", "--vae-batch", "8",
    "--dec-steps", "1", "--dec-batch", "4",
    "--vae2-steps", "1", "--edge-px", "1",
    "--image-steps", "2", "--image-batch", "4",
    "--video-steps", "1", "--video-batch", "1",
    "--threads", "1",
]  # fmt: skip


def run(tmp_path, *extra: str) -> int:
    out = tmp_path / "out"
    return train.main(["--out", str(out), "--work", str(tmp_path / "work"), *TINY, *extra])


def test_all_stages_export_a_folder_that_loads_and_a_rerun_resumes(tmp_path):
    from diffusers import AnimateDiffPipeline

    assert run(tmp_path, "--loss-png", str(tmp_path / "loss.png")) == 0
    work = tmp_path / "work"
    for name in ("state.pt", "decoder.pt", "vae2.pt", "image.pt", "video.pt", "loss.png"):
        assert (work / name).is_file(), name
    assert (tmp_path / "loss.png").stat().st_size > 1000
    progress = json.loads((work / "progress.json").read_text())
    assert progress["vae_step"] == 2 and progress["steps"] == {"image": 2, "video": 1}

    pipe = AnimateDiffPipeline.from_pretrained(tmp_path / "out")
    assert pipe.vae.config.scaling_factor != 1.0  # set from the trained latents
    video = torch.load(work / "video.pt", weights_only=False)
    saved = {k: v.to(torch.float16) for k, v in video["model"].items()}
    exported = pipe.unet.state_dict()
    assert set(saved) == set(exported)
    key = "up_blocks.2.attentions.0.transformer_blocks.0.attn2.to_k.weight"
    assert torch.equal(saved[key], exported[key].to(torch.float16))

    # a second run with the same budget does no new step; a larger budget continues from there
    before = (work / "image.pt").stat().st_mtime_ns
    assert run(tmp_path, "--stages", "image") == 0
    assert torch.load(work / "image.pt", weights_only=False)["step"] == 2
    assert run(tmp_path, "--stages", "image", "--image-steps", "3") == 0
    image = torch.load(work / "image.pt", weights_only=False)
    assert image["step"] == 3 and len(image["losses"]) == 3
    assert (work / "image.pt").stat().st_mtime_ns != before


def test_video_stage_refuses_to_start_before_the_image_stage(tmp_path, capsys):
    assert run(tmp_path, "--stages", "vae") == 0
    try:
        run(tmp_path, "--stages", "video", "--image-steps", "5")
    except SystemExit as exc:
        assert "image stage" in str(exc)
    else:
        raise AssertionError("the video stage started without an image model")


def _denoiser(tmp_path, **kw) -> DenoiserTrainer:
    from transformers import CLIPTokenizer

    vocab.save_tokenizer_files(tmp_path / "tok")
    tok = CLIPTokenizer.from_pretrained(str(tmp_path / "tok"))
    te = configs.build_text_encoder(len(tok), tok.bos_token_id, tok.eos_token_id, tok.pad_token_id)
    vae = configs.build_vae().eval()
    return DenoiserTrainer(DenoiserSettings(**kw), vae, tok, te, tmp_path)


def test_batches_are_a_function_of_seed_and_step(tmp_path):
    a = _denoiser(tmp_path, image_batch=6, video_batch=2, p_uncond=0.3)
    z1, caps1 = a.image_batch(7)
    z2, caps2 = a.image_batch(7)
    _, caps3 = a.image_batch(8)
    assert caps1 == caps2 and torch.equal(z1, z2)
    assert caps1 != caps3
    assert z1.shape == (6, configs.LATENT_CHANNELS, 16, 16)
    v, vcaps = a.video_batch(0)
    assert v.shape == (2, configs.LATENT_CHANNELS, configs.NUM_FRAMES, 16, 16) and len(vcaps) == 2
    other = _denoiser(tmp_path, seed=1, image_batch=6)
    assert other.image_batch(7)[1] != caps1
    # caption dropout: about p_uncond of the captions are ""
    caps = [c for step in range(40) for c in a.image_batch(step)[1]]
    assert 0.2 < sum(c == "" for c in caps) / len(caps) < 0.4


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


def test_learning_rate_warms_up_then_decays_to_a_tenth():
    base = 1e-3
    assert cosine_lr(0, 100, base, warmup=10) == base / 10
    assert cosine_lr(9, 100, base, warmup=10) == base
    assert abs(cosine_lr(100, 100, base, warmup=10) - base / 10) < 1e-12
    # the wall-clock budget decays it too when it runs out before the steps do
    assert abs(cosine_lr(20, 100, base, warmup=10, spent_frac=1.0) - base / 10) < 1e-12
    lrs = [cosine_lr(s, 100, base, warmup=10) for s in range(10, 101)]
    assert all(a >= b for a, b in itertools.pairwise(lrs))


def test_bad_options_stop_with_one_line_before_any_work(tmp_path):
    for extra, words in (
        (["--image-batch", "0"], "--image-batch must be at least 1"),
        (["--dec-batch", "6"], "multiples of 4"),
        (["--stages", "vae,bogus"], "unknown stage(s): bogus"),
    ):
        try:
            run(tmp_path, *extra)
        except SystemExit as exc:
            assert words in str(exc)
        else:
            raise AssertionError(f"{extra} was accepted")
    assert not (tmp_path / "work").exists()
