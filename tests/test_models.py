"""Model loading: every supported layout gives the same model as its source; bad input gives one
clear ModelError/UsageError line, fast and without touching the network."""

from __future__ import annotations

import io
import shutil
import time
from pathlib import Path

import pytest
import torch
from _helpers_models import (
    TinyParts,
    adapter_to_original,
    build_parts,
    noise_prediction,
    save_animatediff_folder,
    save_config_dir,
    save_sd_folder,
    text_encoder_to_ldm,
    unet_to_ldm,
    vae_to_ldm,
)
from rich.console import Console
from safetensors.torch import save_file

from videodirector_cli.diffusion import devices, loading
from videodirector_cli.diffusion.loading import ModelSpec, identity, load, load_model, single_file
from videodirector_cli.errors import ModelError, ResourceError, UsageError
from videodirector_cli.output import Output


def captured_output() -> tuple[Output, io.StringIO]:
    buffer = io.StringIO()
    return Output(mode="human", stderr=Console(file=buffer, width=400)), buffer


@pytest.fixture(autouse=True)
def isolated_caches(tmp_path, monkeypatch):
    """Hash cache and hub cache in tmp; hub strictly offline."""
    from huggingface_hub import constants

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))


@pytest.fixture(scope="module")
def parts() -> TinyParts:
    return build_parts(seed=1)


@pytest.fixture(scope="module")
def expected(parts) -> torch.Tensor:
    return noise_prediction(parts.motion_unet())


@pytest.fixture(scope="module")
def folders(parts, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("layouts")
    paths = {
        "animatediff": save_animatediff_folder(parts, root / "animatediff"),
        "sd": save_sd_folder(parts, root / "sd"),
        "configs": save_config_dir(parts, root / "configs"),
    }
    parts.adapter.save_pretrained(root / "adapter")
    paths["adapter"] = root / "adapter"
    parts.vae.save_pretrained(root / "vae")
    paths["vae"] = root / "vae"
    parts.tokenizer.save_pretrained(root / "tokenizer")
    paths["tokenizer"] = root / "tokenizer"
    base = (
        unet_to_ldm(parts.unet2d) | vae_to_ldm(parts.vae) | text_encoder_to_ldm(parts.text_encoder)
    )
    save_file({k: v.contiguous() for k, v in base.items()}, root / "base.safetensors")
    paths["base"] = root / "base.safetensors"
    motion = adapter_to_original(parts.adapter)
    torch.save(motion, root / "mm_tiny.ckpt")
    paths["motion"] = root / "mm_tiny.ckpt"
    vae_only = {k.removeprefix("first_stage_model."): v for k, v in vae_to_ldm(parts.vae).items()}
    save_file({k: v.contiguous() for k, v in vae_only.items()}, root / "vae.safetensors")
    paths["vae_file"] = root / "vae.safetensors"
    return paths


@pytest.fixture
def single_file_setup(folders, monkeypatch):
    """Point the shipped SD1.5 configs and tokenizer search at the tiny equivalents."""
    monkeypatch.setattr(single_file, "SD15_CONFIG_DIR", folders["configs"])
    monkeypatch.setattr(single_file, "TOKENIZER_SOURCES", ((str(folders["tokenizer"]), ""),))
    return folders


def assert_same_model(model, parts: TinyParts, expected: torch.Tensor) -> None:
    assert type(model.unet).__name__ == "UNetMotionModel"
    torch.testing.assert_close(noise_prediction(model.unet), expected, rtol=0, atol=1e-5)
    ids = parts.tokenizer("a red fox", padding="max_length", max_length=77, return_tensors="pt")
    with torch.no_grad():
        want = parts.text_encoder(ids.input_ids)[0]
        got = model.text_encoder(ids.input_ids)[0]
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
        pixels = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(3)) * 2 - 1
        torch.testing.assert_close(
            model.vae.encode(pixels).latent_dist.mean,
            parts.vae.encode(pixels).latent_dist.mean,
            rtol=0,
            atol=1e-6,
        )
    for module in (model.unet, model.vae, model.text_encoder):
        assert not module.training
        assert not any(p.requires_grad for p in module.parameters())


def assert_animatediff_ddim(scheduler) -> None:
    config = scheduler.config
    assert type(scheduler).__name__ == "DDIMScheduler"
    assert (config.beta_start, config.beta_end, config.beta_schedule) == (0.00085, 0.012, "linear")
    assert config.steps_offset == 1
    assert config.clip_sample is False
    assert config.set_alpha_to_one is False


# ----------------------------------------------------------------------------- layouts


def test_animatediff_pipeline_folder(folders, parts, expected):
    model = load_model(ModelSpec(model=str(folders["animatediff"]), vae=None, device="cpu"))
    assert_same_model(model, parts, expected)
    assert model.identity["model"].startswith("folder:animatediff:sha256:")
    assert model.identity["motion_adapter"] == "included"
    assert model.dtype == torch.float32
    assert_animatediff_ddim(model.scheduler)


def test_sd_folder_plus_adapter_folder(folders, parts, expected):
    spec = ModelSpec(model=str(folders["sd"]), motion_adapter=str(folders["adapter"]))
    model = load_model(spec)
    assert_same_model(model, parts, expected)
    assert model.identity["motion_adapter"].startswith("folder:adapter:sha256:")
    # The folder ships an Euler scheduler: vdir still runs AnimateDiff's DDIM, and says so.
    assert_animatediff_ddim(model.scheduler)
    assert "replaces EulerDiscreteScheduler" in model.identity["scheduler"]


def test_sd_folder_plus_original_motion_module_file(folders, parts, expected):
    spec = ModelSpec(model=str(folders["sd"]), motion_adapter=str(folders["motion"]))
    model = load_model(spec)
    assert_same_model(model, parts, expected)
    assert model.identity["motion_adapter"].startswith("file:mm_tiny.ckpt:sha256:")


def test_single_file_base_and_motion_module(single_file_setup, parts, expected):
    folders = single_file_setup
    output, buffer = captured_output()
    spec = ModelSpec(model=str(folders["base"]), motion_adapter=str(folders["motion"]))
    model = load_model(spec, output)
    assert_same_model(model, parts, expected)
    assert model.identity["model"].startswith("file:base.safetensors:sha256:")
    assert "single-file" in buffer.getvalue()


def test_vae_override_folder_and_single_file(single_file_setup, parts, expected):
    folders = single_file_setup
    from diffusers import AutoencoderKL

    other = AutoencoderKL.from_config(parts.vae.config)  # different random weights
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.05)
    other_dir = folders["vae"].parent / "vae-other"
    other.save_pretrained(other_dir)
    model = load_model(ModelSpec(model=str(folders["animatediff"]), vae=str(other_dir)))
    pixels = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(
            model.vae.encode(pixels).latent_dist.mean, other.encode(pixels).latent_dist.mean
        )
    assert model.identity["vae"].startswith("folder:vae-other:sha256:")
    spec = ModelSpec(
        model=str(folders["sd"]),
        motion_adapter=str(folders["adapter"]),
        vae=str(folders["vae_file"]),
    )
    from_file = load_model(spec)
    assert_same_model(from_file, parts, noise_prediction(parts.motion_unet()))
    assert from_file.identity["vae"].startswith("file:vae.safetensors:sha256:")


def test_hub_id_found_in_local_cache_without_network(
    folders, parts, expected, tmp_path, monkeypatch
):
    import huggingface_hub

    commit = "0123456789abcdef0123456789abcdef01234567"
    storage = tmp_path / "hub" / "models--acme--tiny-animatediff"
    shutil.copytree(folders["animatediff"], storage / "snapshots" / commit)
    (storage / "refs").mkdir(parents=True)
    (storage / "refs" / "main").write_text(commit)
    monkeypatch.delenv("HF_HUB_OFFLINE")  # even online, a cached model must not reach the hub

    real = huggingface_hub.snapshot_download

    def cache_only(*args, **kwargs):
        if not kwargs.get("local_files_only"):
            raise AssertionError("the hub was contacted although the model is cached")
        return real(*args, **kwargs)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", cache_only)
    model = load_model(ModelSpec(model="acme/tiny-animatediff"))
    assert_same_model(model, parts, expected)
    assert model.identity["model"] == f"hub:acme/tiny-animatediff@{commit}"


def test_pinned_revision_loads_its_snapshot_and_its_commit_is_the_identity(
    folders, parts, expected, tmp_path
):
    main, v2 = "a" * 40, "b" * 40
    storage = tmp_path / "hub" / "models--acme--tiny-animatediff"
    for commit in (main, v2):  # the same files at two commits: the identity follows the commit
        shutil.copytree(folders["animatediff"], storage / "snapshots" / commit)
    (storage / "refs").mkdir(parents=True)
    (storage / "refs" / "main").write_text(main)
    (storage / "refs" / "v2").write_text(v2)
    pinned = load_model(ModelSpec(model="acme/tiny-animatediff@v2"))
    assert_same_model(pinned, parts, expected)
    assert pinned.identity["model"] == f"hub:acme/tiny-animatediff@{v2}"
    default = load_model(ModelSpec(model="acme/tiny-animatediff"))
    assert default.identity["model"] == f"hub:acme/tiny-animatediff@{main}"
    assert default.identity != pinned.identity


def test_toy_builtin_loads_the_shipped_folder(folders, monkeypatch):
    monkeypatch.setattr(load, "TOY_WEIGHTS", folders["animatediff"])
    model = load_model(ModelSpec(model="toy"))
    assert model.identity["model"].startswith("builtin:toy:")
    assert not model.meaningless


def test_toy_builtin_missing_weights_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(load, "TOY_WEIGHTS", tmp_path / "nowhere")
    with pytest.raises(ModelError, match="'toy' model's weights are not in this installation"):
        load_model(ModelSpec(model="toy"))


def test_tiny_builtin_warns_that_images_are_meaningless():
    output, buffer = captured_output()
    model = load_model(ModelSpec(model="tiny"), output)
    assert model.meaningless
    assert "random weights" in buffer.getvalue()
    assert "meaningless" in buffer.getvalue()
    assert_animatediff_ddim(model.scheduler)
    with pytest.raises(UsageError, match="tiny"):
        load_model(ModelSpec(model="tiny", vae="some/vae"))


# ----------------------------------------------------------------------------- identity


def test_identity_is_a_content_hash_cached_by_size_and_mtime(folders, tmp_path, monkeypatch):
    big = tmp_path / "big.bin"
    big.write_bytes(b"\1" * (identity.HASH_CACHE_MIN_BYTES + 10))
    calls = []
    real = identity.hash_file
    monkeypatch.setattr(identity, "hash_file", lambda p: calls.append(p) or real(p))
    first = loading.file_digest(big)
    second = loading.file_digest(big)
    assert first == second == real(big)
    assert len(calls) == 1, "the second call must come from the cache"
    assert (tmp_path / "xdg-cache" / "vdir" / "file-hashes.json").is_file()
    big.write_bytes(b"\2" * (identity.HASH_CACHE_MIN_BYTES + 10))
    assert loading.file_digest(big) != first


def test_folder_identity_changes_when_weights_change(folders, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(folders["sd"], copy)
    before = loading.hash_tree(copy / "unet")
    assert loading.hash_tree(copy / "unet") == before
    weights = copy / "unet" / "diffusion_pytorch_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    assert loading.hash_tree(copy / "unet") != before


# ----------------------------------------------------------------------------- bad input


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text
    return text


def test_missing_path():
    with pytest.raises(ModelError) as info:
        load_model(ModelSpec(model="./no/such/model"))
    assert "does not exist" in one_line(info.value)


def test_folder_without_unet(tmp_path):
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "readme.txt").write_text("hello")
    with pytest.raises(ModelError) as info:
        load_model(ModelSpec(model=str(tmp_path / "stuff")))
    assert "has no unet/ folder: not a diffusers SD/AnimateDiff model" in one_line(info.value)


def test_folder_with_missing_component_names_it(folders, tmp_path):
    copy = tmp_path / "partial"
    shutil.copytree(folders["animatediff"], copy)
    shutil.rmtree(copy / "text_encoder")
    with pytest.raises(ModelError, match=r"has no text_encoder/ folder"):
        load_model(ModelSpec(model=str(copy)))
    (copy / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(ModelError, match=r"unet has no weights"):
        load_model(ModelSpec(model=str(copy)))


def test_adapter_or_vae_given_as_model_says_which_option(folders):
    with pytest.raises(ModelError, match="pass it as --motion-adapter"):
        load_model(ModelSpec(model=str(folders["adapter"])))
    with pytest.raises(ModelError, match="pass it as --vae"):
        load_model(ModelSpec(model=str(folders["vae"])))
    with pytest.raises(ModelError, match=r"motion module.*pass it as --motion-adapter"):
        load_model(ModelSpec(model=str(folders["motion"])))


def test_text_file_named_safetensors(tmp_path):
    fake = tmp_path / "model.safetensors"
    fake.write_text("this is not a checkpoint\n")
    with pytest.raises(ModelError) as info:
        load_model(ModelSpec(model=str(fake)))
    assert "is not a readable weights file" in one_line(info.value)


def test_motion_adapter_that_does_not_fit(folders, tmp_path):
    from diffusers import MotionAdapter

    wrong = MotionAdapter(
        block_out_channels=(16, 32, 64), motion_layers_per_block=1, motion_norm_num_groups=4
    )
    wrong.save_pretrained(tmp_path / "wrong")
    with pytest.raises(ModelError, match="does not fit this UNet"):
        load_model(ModelSpec(model=str(folders["sd"]), motion_adapter=str(tmp_path / "wrong")))


def test_hub_id_not_cached_offline_is_fast_and_says_what_to_fetch():
    start = time.perf_counter()
    with pytest.raises(ModelError) as info:
        load_model(ModelSpec(model="acme/not-downloaded"))
    elapsed = time.perf_counter() - start
    text = one_line(info.value)
    assert "model acme/not-downloaded is not available locally" in text
    assert "hf download acme/not-downloaded" in text
    assert "--model /path" in text
    assert elapsed < 5, f"took {elapsed:.1f} s: no retries expected"


def test_default_setup_not_cached_names_every_download_in_one_line():
    with pytest.raises(ModelError) as info:
        load_model(ModelSpec())
    text = one_line(info.value)
    for repo in (loading.DEFAULT_MODEL, loading.DEFAULT_MOTION_ADAPTER, loading.DEFAULT_VAE):
        assert f"hf download {repo}" in text


def test_single_file_without_local_tokenizer(single_file_setup, monkeypatch, tmp_path):
    monkeypatch.setattr(single_file, "TOKENIZER_SOURCES", ((str(tmp_path / "none"), ""),))
    with pytest.raises(ModelError, match=f"hf download {loading.CLIP_TOKENIZER_REPO} vocab.json"):
        load_model(ModelSpec(model=str(single_file_setup["base"])))


# ----------------------------------------------------------------------------- devices


def test_device_cuda_without_gpu_is_a_usage_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UsageError, match="no CUDA GPU is available"):
        devices.resolve_device("cuda")
    with pytest.raises(UsageError, match="no CUDA GPU"):
        load_model(ModelSpec(model="tiny", device="cuda"))


def test_device_auto_order(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "_mps_available", lambda: False)
    assert devices.resolve_device("auto").type == "cpu"
    monkeypatch.setattr(devices, "_mps_available", lambda: True)
    assert devices.resolve_device("auto").type == "mps"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert devices.resolve_device("auto").type == "cuda"
    with pytest.raises(UsageError, match="not a device name"):
        devices.resolve_device("tpu")


def test_dtype_rules(monkeypatch):
    cpu, cuda, mps = torch.device("cpu"), torch.device("cuda"), torch.device("mps")
    assert devices.resolve_dtype("auto", cpu) == torch.float32
    assert devices.resolve_dtype("auto", mps) == torch.float16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert devices.resolve_dtype("auto", cuda) == torch.bfloat16
    assert devices.resolve_dtype("fp16", cuda) == torch.float16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert devices.resolve_dtype("auto", cuda) == torch.float16
    with pytest.raises(UsageError, match="does not support bfloat16"):
        devices.resolve_dtype("bf16", cuda)
    for half in ("fp16", "bf16"):
        with pytest.raises(UsageError, match="on the CPU"):
            devices.resolve_dtype(half, cpu)
    with pytest.raises(UsageError, match="not a number format"):
        devices.resolve_dtype("int8", cpu)


def test_oom_guard_turns_out_of_memory_into_advice():
    with pytest.raises(ResourceError) as info, devices.oom_guard("lower --frames"):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    assert "out of GPU memory" in str(info.value)
    assert "lower --frames" in str(info.value)
    with pytest.raises(ValueError), devices.oom_guard():  # anything else passes through
        raise ValueError("unrelated")
