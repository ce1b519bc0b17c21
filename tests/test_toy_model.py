"""The shipped toy model folder (toy/weights), the scorer (toy.scorer) and the check (toy.check)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from videodirector_cli.toy import WEIGHTS_DIR, check, configs, scorer, world

MB = 1024 * 1024


def test_folder_is_a_diffusers_animatediff_pipeline_under_20_mb():
    index = json.loads((WEIGHTS_DIR / "model_index.json").read_text())
    assert index["_class_name"] == "AnimateDiffPipeline"
    assert index["unet"] == ["diffusers", "UNetMotionModel"]
    assert index["vae"] == ["diffusers", "AutoencoderKL"]
    assert index["text_encoder"][1] == "CLIPTextModel"
    assert index["tokenizer"][1].startswith("CLIPTokenizer")
    assert index["scheduler"] == ["diffusers", "DDIMScheduler"]
    for sub in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert (WEIGHTS_DIR / sub).is_dir(), sub
    assert (WEIGHTS_DIR / "tokenizer" / "vocab.json").is_file()
    assert (WEIGHTS_DIR / "tokenizer" / "merges.txt").is_file()
    total = sum(f.stat().st_size for f in WEIGHTS_DIR.rglob("*") if f.is_file())
    assert total <= 20 * MB, f"{total / MB:.1f} MB"
    assert not list(WEIGHTS_DIR.rglob("*.bin")), "safetensors only"


def test_loads_offline_through_diffusers_in_a_fresh_process():
    """HF_HUB_OFFLINE=1 is read at import time, so the load runs in its own interpreter."""
    code = textwrap.dedent(
        f"""
        import torch
        from diffusers import AnimateDiffPipeline, AutoencoderKL, DDIMScheduler, UNetMotionModel
        from transformers import CLIPTextModel, CLIPTokenizer
        d = {str(WEIGHTS_DIR)!r}
        pipe = AnimateDiffPipeline.from_pretrained(d)
        assert isinstance(pipe.unet, UNetMotionModel)
        UNetMotionModel.from_pretrained(d, subfolder="unet")
        AutoencoderKL.from_pretrained(d, subfolder="vae")
        CLIPTextModel.from_pretrained(d, subfolder="text_encoder")
        tok = CLIPTokenizer.from_pretrained(d, subfolder="tokenizer")
        DDIMScheduler.from_pretrained(d, subfolder="scheduler")
        print("OK", pipe.unet.dtype, pipe.text_encoder.dtype, tok.model_max_length)
        """
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=os.path.join(os.getcwd(), ".no-hf-home"))
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "OK torch.float32 torch.float32 77" in res.stdout


@pytest.fixture(scope="module")
def pipe():
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    return check.load_pipeline(WEIGHTS_DIR)


def test_configuration_contract(pipe):
    sch = pipe.scheduler.config
    assert type(pipe.scheduler).__name__ == "DDIMScheduler"
    assert (sch.beta_start, sch.beta_end, sch.beta_schedule) == (0.00085, 0.012, "linear")
    assert sch.steps_offset == 1 and sch.clip_sample is False and sch.set_alpha_to_one is False
    assert pipe.tokenizer.model_max_length == 77
    assert pipe.text_encoder.config.max_position_embeddings == 77
    assert pipe.unet.config.cross_attention_dim == pipe.text_encoder.config.hidden_size
    assert pipe.vae_scale_factor == 4  # 64x64 frames -> 16x16 latents
    assert pipe.vae.config.scaling_factor != 1.0  # set from the trained latents' std
    names = {n for n, _ in pipe.unet.named_modules()}
    for blk in ("up_blocks.1", "up_blocks.2", "down_blocks.0", "down_blocks.1", "mid_block"):
        assert f"{blk}.attentions.0.transformer_blocks.0.attn1" in names, blk
        assert f"{blk}.attentions.0.transformer_blocks.0.attn2" in names, blk
    for blk in ("up_blocks.1", "up_blocks.2", "down_blocks.0", "down_blocks.1"):
        assert f"{blk}.motion_modules.0.transformer_blocks.0.attn1" in names, blk


def test_every_caption_word_is_one_token_in_the_shipped_tokenizer(pipe):
    tok = pipe.tokenizer
    for w in world.all_words():
        assert tok.convert_ids_to_tokens(tok(w, add_special_tokens=False).input_ids) == [w + "</w>"]


def test_noise_prediction_shape(pipe):
    F_ = configs.NUM_FRAMES
    ids = pipe.tokenizer(
        ["a red circle moving right on a blue background"],
        padding="max_length",
        max_length=77,
        return_tensors="pt",
    ).input_ids
    with torch.no_grad():
        emb = pipe.text_encoder(ids)[0]
        assert emb.shape == (1, 77, pipe.text_encoder.config.hidden_size)
        z = torch.randn(1, 4, F_, 16, 16, generator=torch.Generator().manual_seed(0))
        eps = pipe.unet(
            z, torch.tensor([500]), encoder_hidden_states=emb.repeat_interleave(F_, 0)
        ).sample
    assert eps.shape == (1, 4, F_, 16, 16)
    assert torch.isfinite(eps).all()


def test_vae_reconstructs_a_world_clip(pipe):
    clip = world.make_clip_from("red", "square", "right", "black", seed=world.HELDOUT_SEED_START)
    x = torch.from_numpy(clip.frames[:4]).float().permute(0, 3, 1, 2) / 127.5 - 1
    with torch.no_grad():
        z = pipe.vae.encode(x).latent_dist.mean
        assert z.shape == (4, 4, 16, 16)
        rec = pipe.vae.decode(z).sample
    err = (rec - x).abs().mul(127.5).mean().item()
    assert err < 12.0, err  # mean abs error on the 0-255 scale


def test_scorer_is_right_on_world_clips_and_sees_reversed_motion():
    prompts = scorer.eval_prompts(24)
    s = scorer.summarize(scorer.ground_truth_scores(prompts))
    assert s["colour"] == s["direction"] == s["background"] == s["shape"] == 1.0
    assert 0.98 < s["smoothness"] < 1.0  # moving sharp objects: a little below a still clip
    clip = world.make_clip_from("yellow", "triangle", "right", "striped", seed=3)
    rev = scorer.score_clip(clip.frames[::-1], "yellow", "triangle", "right", "striped")
    assert rev.pred_direction == "left" and not rev.direction_ok and rev.colour_ok
    wrong_bg = scorer.score_clip(clip.frames, "yellow", "triangle", "right", "white")
    assert not wrong_bg.bg_ok
    noise = np.random.default_rng(0).integers(0, 256, clip.frames.shape, dtype=np.uint8)
    bad = scorer.score_clip(noise, "yellow", "triangle", "right", "striped")
    assert not bad.direction_ok and bad.smoothness < s["smoothness"] - 0.1


def test_eval_prompts_are_held_out_balanced_and_follow_the_seed():
    a = scorer.eval_prompts(48)
    assert len(set(a)) == 48 and all(world.is_heldout_combo(*p) for p in a)
    counts = {d: sum(p[2] == d for p in a) for d in world.DIRECTIONS}
    assert set(counts.values()) == {8}
    assert scorer.eval_prompts(48) == a and scorer.eval_prompts(48, seed=1) != a
    with pytest.raises(ValueError):
        scorer.eval_prompts(len(world.heldout_combos()) + 1)


def test_vae_roundtrip_scoring_runs(pipe):
    scores = check.vae_roundtrip_scores(pipe, scorer.eval_prompts(2))
    assert len(scores) == 2
    assert all(s.bg_ok for s in scores)  # the VAE keeps backgrounds (see docs/toy-model.md)


def test_check_runs_on_a_tiny_sample(pipe):
    prompts = scorer.eval_prompts(1)
    scores, clips = check.run_check(pipe, prompts, steps=2, progress=False)
    assert len(scores) == 1 and clips[0].shape == (16, 64, 64, 3) and clips[0].dtype == np.uint8
    summary = scorer.summarize(scores)
    assert summary["n"] == 1 and 0.0 <= summary["colour"] <= 1.0


def test_word_sensitivity_reads_how_much_each_word_group_moves_the_prediction(pipe, monkeypatch):
    prompts = scorer.eval_prompts(2)
    sens = check.word_sensitivity(pipe, prompts, steps=5)
    assert set(sens) == {"colour", "shape", "motion", "background"}
    assert sens["colour"] > 1e-3 and sens["background"] > 1e-3, sens  # the model reads them
    blind = pipe.encode_prompt(world.caption_for(*prompts[0]), "cpu", 1, False)
    monkeypatch.setattr(pipe, "encode_prompt", lambda *a, **k: blind)  # a model deaf to words
    assert check.word_sensitivity(pipe, prompts, steps=5) == dict.fromkeys(sens, 0.0)


def test_check_command_prints_one_summary_line_last_and_refuses_bad_ranges(tmp_path, capsys):
    report = tmp_path / "r.json"
    first = world.HELDOUT_SEED_START + 77
    args = ["--n", "1", "--steps", "1", "--threads", "1", "--first-seed", str(first)]
    assert check.main([*args, "--json", str(report)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    data = json.loads(report.read_text())
    assert data["first_seed"] == first and data["n"] == 1
    assert data["samples"][0]["prompt"] == world.caption_for(*scorer.eval_prompts(1, seed=77)[0])
    assert last.startswith("toy check, 1 held-out prompts from seed 1000077, 1 steps:")
    assert f"smoothness {data['generated']['smoothness']:.4f}" in last
    assert f"motion {data['word_sensitivity']['motion']:.4f}" in last
    for bad, words in (
        (["--first-seed", "5"], "--first-seed must be at least"),
        (["--n", "0"], "--n must be between 1 and"),
        (["--n", "500"], "--n must be between 1 and"),
    ):
        with pytest.raises(SystemExit, match=words):
            check.main(bad)


#: The slow test's held-out set: 24 prompts and seeds the documented 48-prompt check never uses.
SLOW_FIRST_SEED = world.HELDOUT_SEED_START + 10_000


def _slow_check(pipe):
    prompts = scorer.eval_prompts(24, seed=SLOW_FIRST_SEED - world.HELDOUT_SEED_START)
    scores, _ = check.run_check(pipe, prompts, steps=25, first_seed=SLOW_FIRST_SEED, progress=False)
    truth = scorer.summarize(scorer.ground_truth_scores(prompts, SLOW_FIRST_SEED))
    return prompts, scorer.summarize(scores), truth


@pytest.mark.slow
def test_model_meets_the_word_targets_on_24_heldout_prompts(pipe):
    """The trained model (not the scorer) on 24 held-out attribute combinations, 25 DDIM steps
    (about 3 minutes): the targets of docs/toy-model.md (issue 12) that it meets."""
    prompts, s, _ = _slow_check(pipe)
    assert s["background"] >= 0.9, s
    assert s["colour"] >= 0.8, s
    assert s["shape"] >= 0.6, s
    roundtrip = scorer.summarize(check.vae_roundtrip_scores(pipe, prompts, SLOW_FIRST_SEED))
    assert roundtrip["shape"] >= 0.9, roundtrip


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="issue 12, not met yet: motion 25 % (target 60 %), smoothness 0.0074 below the "
    "world's (target 0.005) on the 48-prompt check; strict, so it fails once the model meets them",
)
def test_model_meets_the_motion_targets_on_24_heldout_prompts(pipe):
    _, s, truth = _slow_check(pipe)
    assert s["direction"] >= 0.6, s
    assert abs(s["smoothness"] - truth["smoothness"]) <= 0.005, (s, truth)
