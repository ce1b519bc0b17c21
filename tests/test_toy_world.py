"""The procedural world (toy.world) and the toy tokenizer (toy.vocab)."""

from __future__ import annotations

import numpy as np
import pytest

from videodirector_cli.toy import vocab, world


def test_same_seed_same_clip_and_different_seeds_differ():
    a, b = world.make_clip(123), world.make_clip(123)
    assert np.array_equal(a.frames, b.frames)
    assert np.array_equal(a.masks, b.masks)
    assert a.caption == b.caption
    c = world.make_clip(124)
    assert not np.array_equal(a.frames, c.frames)


def test_shapes_and_dtypes():
    clip = world.make_clip(7, frames=16, size=64)
    assert clip.frames.shape == (16, 64, 64, 3) and clip.frames.dtype == np.uint8
    assert clip.masks.shape == (16, 64, 64) and clip.masks.dtype == bool
    assert clip.num_frames == 16
    small = world.make_clip(7, frames=8, size=32)
    assert small.frames.shape == (8, 32, 32, 3)


@pytest.mark.parametrize("seed", range(20))
def test_caption_matches_attributes(seed):
    clip = world.make_clip(seed)
    assert clip.caption == world.caption_for(
        clip.colour, clip.shape, clip.direction, clip.background
    )
    words = clip.caption.split()
    assert words[:3] == ["a", clip.colour, clip.shape]
    assert words[-3:] == ["a", clip.background, "background"]
    assert world.motion_phrase(clip.direction) in clip.caption
    assert clip.colour != clip.background


@pytest.mark.parametrize("seed", range(10))
def test_mask_is_exactly_the_drawn_object(seed):
    clip = world.make_clip(seed)
    bg = world._paint_background(clip.background, 64)
    rgb = np.array(world.COLOURS[clip.colour], np.uint8)
    for f in range(clip.num_frames):
        m = clip.masks[f]
        assert m.sum() > 50  # a visible object in every frame
        assert (clip.frames[f][m] == rgb).all()
        assert (clip.frames[f][~m] == bg[~m]).all()  # nothing else drawn (single object)
        # fully inside the frame: no mask pixel on the border
        assert not (m[0].any() or m[-1].any() or m[:, 0].any() or m[:, -1].any())


def _centroids(masks):
    out = []
    for m in masks:
        ys, xs = np.nonzero(m)
        out.append((xs.mean(), ys.mean()))
    return np.array(out)


@pytest.mark.parametrize("direction", list(world.DIRECTIONS))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_motion_follows_direction(direction, seed):
    clip = world.make_clip_from("red", "circle", direction, "black", seed=seed)
    c = _centroids(clip.masks)
    dx, dy = c[-1] - c[0]
    steps = np.diff(c, axis=0)
    if direction == "right":
        assert dx > 20 and abs(dy) < 1 and (steps[:, 0] > 0).all()
    elif direction == "left":
        assert dx < -20 and abs(dy) < 1 and (steps[:, 0] < 0).all()
    elif direction == "down":
        assert dy > 20 and abs(dx) < 1 and (steps[:, 1] > 0).all()
    elif direction == "up":
        assert dy < -20 and abs(dx) < 1 and (steps[:, 1] < 0).all()
    elif direction == "diagonally":
        assert dx > 14 and dy > 14 and abs(dx - dy) < 2
    elif direction == "bouncing":
        assert abs(dx) < 1 and abs(dy) < 2  # back where it started
        assert c[:, 1].min() < c[0, 1] - 15  # but went up in between
    else:  # pragma: no cover
        raise AssertionError(direction)


def test_shapes_differ_in_fill():
    fills = {}
    for s in world.SHAPES:
        m = world.make_clip_from("red", s, "right", "black", seed=3).masks[0]
        ys, xs = np.nonzero(m)
        fills[s] = m.sum() / ((np.ptp(ys) + 1) * (np.ptp(xs) + 1))
    assert fills["square"] > 0.95
    assert 0.7 < fills["circle"] < 0.85
    assert fills["triangle"] < 0.6 and fills["diamond"] < 0.6


def test_second_object():
    clip = world.make_clip_from(
        "red", "circle", "right", "black", seed=5, second=("blue", "square", "left")
    )
    assert (
        clip.caption
        == "a red circle moving right and a blue square moving left on a black background"
    )
    assert clip.masks2 is not None
    assert not (clip.masks & clip.masks2).any()
    blue = np.array(world.COLOURS["blue"], np.uint8)
    for f in range(clip.num_frames):
        assert (clip.frames[f][clip.masks2[f]] == blue).all()
    # make_clip draws second objects sometimes when asked to
    assert any(world.make_clip(s, p_second=0.5).second is not None for s in range(20))
    assert all(world.make_clip(s).second is None for s in range(20))


def test_unknown_attributes_rejected():
    with pytest.raises(ValueError, match="colour"):
        world.make_clip_from("teal", "circle", "right", "black")
    with pytest.raises(ValueError, match="shape"):
        world.make_clip_from("red", "hexagon", "right", "black")
    with pytest.raises(ValueError, match="direction"):
        world.make_clip_from("red", "circle", "sideways", "black")
    with pytest.raises(ValueError, match="background"):
        world.make_clip_from("red", "circle", "right", "plaid")


def test_heldout_split():
    held = world.heldout_combos()
    assert (
        0.05
        < len(held)
        / (len(world.COLOURS) * len(world.SHAPES) * len(world.DIRECTIONS) * len(world.BACKGROUNDS))
        < 0.25
    )
    for s in range(40):
        c = world.make_clip(s, split="train")
        assert not world.is_heldout_combo(c.colour, c.shape, c.direction, c.background)
        h = world.make_clip(s, split="heldout")
        assert (h.colour, h.shape, h.direction, h.background) in held


def test_colour_names_are_distinct_rgb():
    vals = list(world.COLOURS.values())
    assert len(set(vals)) == len(vals)
    for rgb in vals:
        assert len(rgb) == 3 and all(0 <= v <= 255 for v in rgb)


# ---------------------------------------------------------------------------------------------
# tokenizer
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer():
    return vocab.build_tokenizer()


def test_every_word_is_one_token(tokenizer):
    for w in vocab.vocabulary_words():
        ids = tokenizer(w, add_special_tokens=False).input_ids
        assert len(ids) == 1, (w, tokenizer.convert_ids_to_tokens(ids))
        assert tokenizer.convert_ids_to_tokens(ids) == [w + "</w>"]


@pytest.mark.parametrize("seed", range(10))
def test_caption_round_trip(tokenizer, seed):
    cap = world.make_clip(seed, p_second=0.5).caption
    ids = tokenizer(cap).input_ids
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert len(ids) == len(cap.split()) + 2  # one token per word
    assert tokenizer.decode(ids, skip_special_tokens=True) == cap


def test_unknown_text_still_tokenises(tokenizer):
    ids = tokenizer("a zebra!", add_special_tokens=False).input_ids
    assert tokenizer.unk_token_id not in ids or tokenizer.unk_token_id == tokenizer.eos_token_id
    assert len(ids) == 1 + 5 + 1  # "a", z-e-b-r-a as characters, "!"
    assert tokenizer.decode(ids) == "a zebra !"


def test_saved_files_load_with_from_pretrained(tmp_path, tokenizer):
    from transformers import CLIPTokenizer

    vocab.save_tokenizer_files(tmp_path)
    assert (tmp_path / "vocab.json").is_file() and (tmp_path / "merges.txt").is_file()
    loaded = CLIPTokenizer.from_pretrained(str(tmp_path))
    assert loaded.model_max_length == 77
    cap = "a red circle moving right on a blue background"
    padded = loaded(cap, padding="max_length", max_length=loaded.model_max_length).input_ids
    assert len(padded) == 77
    assert padded[: len(cap.split()) + 2] == tokenizer(cap).input_ids


def test_objects_are_several_latent_cells_across_and_always_inside_the_frame():
    """Radius 10-14 px: 5-7 cells of the 16x16 latent grid, so a shape survives the VAE; the
    diamond (the widest shape) still never touches the border, whatever the seed."""
    for seed in range(300):
        clip = world.make_clip(seed, p_second=0.3)
        assert world.RADIUS[0] <= clip.radius <= world.RADIUS[1]
        m = clip.masks
        assert not (m[:, 0].any() or m[:, -1].any() or m[:, :, 0].any() or m[:, :, -1].any())
        travel = np.hypot(*(clip.centers[-1] - clip.centers[0]))
        if clip.direction != "bouncing":
            assert world.TRAVEL[0] * 64 - 1e-6 <= travel <= world.TRAVEL[1] * 64 + 1e-6
