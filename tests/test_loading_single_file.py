"""Damaged single-file checkpoints: a missing UNet/VAE tensor is a ModelError that names it,
an extra one loads with a warning that names it; and vdir's LDM names for SD1.5's real shapes
are exactly what diffusers' own converter reads."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from _helpers_models import (
    TinyParts,
    build_parts,
    noise_prediction,
    save_config_dir,
    text_encoder_to_ldm,
    unet_to_ldm,
    vae_to_ldm,
)
from rich.console import Console
from safetensors.torch import save_file

from videodirector_cli.diffusion.loading import ModelSpec, load_model, single_file
from videodirector_cli.diffusion.loading.common import read_config
from videodirector_cli.diffusion.loading.ldm_keys import unet_ldm_name, vae_ldm_name
from videodirector_cli.errors import ModelError
from videodirector_cli.output import Output

UNET = "model.diffusion_model."
VAE = "first_stage_model."


@pytest.fixture(scope="module")
def parts() -> TinyParts:
    return build_parts(seed=1)


@pytest.fixture(scope="module")
def layout(parts, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("single-file")
    parts.tokenizer.save_pretrained(root / "tokenizer")
    adapter = root / "adapter"
    parts.adapter.save_pretrained(adapter)
    return {
        "configs": save_config_dir(parts, root / "configs"),
        "tokenizer": root / "tokenizer",
        "adapter": adapter,
    }


@pytest.fixture(autouse=True)
def tiny_sd15(layout, tmp_path, monkeypatch):
    """The shipped SD1.5 configs and tokenizer search pointed at the tiny equivalents; offline."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setattr(single_file, "SD15_CONFIG_DIR", layout["configs"])
    monkeypatch.setattr(single_file, "TOKENIZER_SOURCES", ((str(layout["tokenizer"]), ""),))


def checkpoint(parts: TinyParts) -> dict[str, torch.Tensor]:
    """A full SD1.5-layout state dict (UNet, VAE, text encoder), as civitai files hold them."""
    state = (
        unet_to_ldm(parts.unet2d) | vae_to_ldm(parts.vae) | text_encoder_to_ldm(parts.text_encoder)
    )
    return {key: value.contiguous() for key, value in state.items()}


def write(state: dict[str, torch.Tensor], path: Path) -> Path:
    save_file(state, path)
    return path


def load(path: Path, layout, vae: Path | None = None):
    buffer = io.StringIO()
    output = Output(mode="human", stderr=Console(file=buffer, width=1000))
    spec = ModelSpec(model=str(path), motion_adapter=str(layout["adapter"]))
    spec.vae = str(vae) if vae is not None else None
    return load_model(spec, output), buffer.getvalue()


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text
    return text


@pytest.mark.parametrize(
    "deleted",
    [
        UNET + "input_blocks.1.0.in_layers.0.weight",  # a down block's resnet norm
        UNET + "output_blocks.1.1.conv.bias",  # the first up block's upsampler
        UNET + "time_embed.2.weight",
        VAE + "encoder.mid.attn_1.q.weight",
        VAE + "decoder.up.0.block.0.nin_shortcut.weight",
    ],
)
def test_a_missing_tensor_is_named(parts, layout, tmp_path, deleted):
    state = checkpoint(parts)
    assert deleted in state, "the helper must write the real LDM names"
    del state[deleted]
    path = write(state, tmp_path / "damaged.safetensors")
    with pytest.raises(ModelError) as info:
        load(path, layout)
    text = one_line(info.value)
    what = "UNet" if deleted.startswith(UNET) else "VAE"
    assert "damaged.safetensors lacks 1 of the" in text
    assert f"{what} tensors ({deleted})" in text
    assert "meta" not in text


def test_many_missing_tensors_are_counted_and_a_few_named(parts, layout, tmp_path):
    state = checkpoint(parts)
    gone = sorted(k for k in state if k.startswith(UNET + "input_blocks.1."))
    for key in gone:
        del state[key]
    path = write(state, tmp_path / "cut.safetensors")
    with pytest.raises(ModelError) as info:
        load(path, layout)
    text = one_line(info.value)
    assert f"cut.safetensors lacks {len(gone)} of the" in text
    assert f"({', '.join(gone[:3])}, ...)" in text


def test_extra_tensors_load_and_are_reported(parts, layout, tmp_path):
    state = checkpoint(parts)
    extra = [UNET + "input_blocks.1.0.extra.weight", UNET + "bogus", VAE + "decoder.leftover"]
    for key in extra:
        state[key] = torch.zeros(3)
    path = write(state, tmp_path / "extra.safetensors")
    model, messages = load(path, layout)
    torch.testing.assert_close(
        noise_prediction(model.unet), noise_prediction(parts.motion_unet()), rtol=0, atol=1e-5
    )
    assert (
        f"warning: extra.safetensors holds 2 tensors the UNet does not use, ignored ({UNET}bogus, {UNET}input_blocks.1.0.extra.weight)"
        in messages
    )
    assert f"holds 1 tensor the VAE does not use, ignored ({VAE}decoder.leftover)" in messages


def test_vae_only_file_missing_a_tensor_is_named(parts, layout, tmp_path):
    base = write(checkpoint(parts), tmp_path / "base.safetensors")
    vae_only = {k.removeprefix(VAE): v for k, v in checkpoint(parts).items() if k.startswith(VAE)}
    del vae_only["decoder.conv_out.bias"]
    vae = write(vae_only, tmp_path / "vae.safetensors")
    with pytest.raises(ModelError) as info:
        load(base, layout, vae=vae)
    assert "vae.safetensors lacks 1 of the" in one_line(info.value)
    assert "VAE tensors (decoder.conv_out.bias)" in one_line(info.value)


@pytest.mark.parametrize("component", ["unet", "vae"])
def test_ldm_names_at_sd15_shape_are_what_diffusers_converts(component):
    """Built on the meta device from the shipped SD1.5 configs: every diffusers tensor, renamed
    to its LDM name, is read back by diffusers' converter into the same tensor."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import (
        convert_ldm_unet_checkpoint,
        convert_ldm_vae_checkpoint,
    )

    config = read_config(
        Path(single_file.__file__).parents[1] / "configs" / "sd15" / component / "config.json"
    )
    model_class, name, convert, prefix = {
        "unet": (UNet2DConditionModel, unet_ldm_name, convert_ldm_unet_checkpoint, UNET),
        "vae": (AutoencoderKL, vae_ldm_name, convert_ldm_vae_checkpoint, VAE),
    }[component]
    with torch.device("meta"):
        model = model_class.from_config(config)
    tensors = model.state_dict()
    ldm = {prefix + name(key, config): value for key, value in tensors.items()}
    assert len(ldm) == len(tensors), "two tensors given one LDM name"
    converted = convert(ldm, config)
    assert set(converted) == set(tensors)
    for key, value in converted.items():
        assert value is ldm[prefix + name(key, config)], key
