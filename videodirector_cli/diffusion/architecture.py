"""A model's shape without its weights: configs, and copies built on the meta device.

Counting FLOPs (``flops``) and memory (``memtrack``) needs the modules, not their numbers:
a UNet built on the meta device has every parameter's shape and dtype and takes no memory,
so the real SD1.5 + AnimateDiff shape (1.3 B parameters) is built in about a second on any
machine. ``Architecture`` holds the configs of the three components that run on the
accelerator; it comes from the configs shipped with vdir (SD1.5 + AnimateDiff v3), the
built-in tiny and toy models, a diffusers folder, or a loaded model.

Meta copies get ``MetaAttention`` processors: the same projections as diffusers' default
processor, with ``projection.sdpa``, which runs the memory-efficient kernel on the meta device
(what CUDA runs) instead of PyTorch's math fallback.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from videodirector_cli.diffusion.components import DiffusionModel

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
SD15_ANIMATEDIFF = "sd15-animatediff-v3"
NAMES = (SD15_ANIMATEDIFF, "tiny", "toy")


def _plain(config: Any) -> dict[str, Any]:
    """A config as JSON-able data, without diffusers' private keys."""
    public = {k: v for k, v in dict(config).items() if not k.startswith("_")}
    return json.loads(json.dumps(public, default=_jsonable))


def _jsonable(value: Any) -> Any:
    """Tuples and other sequences as lists; anything else (a path a loader left) as text."""
    if isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
        return str(value)
    return list(value)


@dataclass(frozen=True)
class Architecture:
    """The configs of the UNet (with motion modules), the VAE and the text encoder."""

    name: str
    unet: dict[str, Any]
    """UNetMotionModel config."""
    vae: dict[str, Any]
    """AutoencoderKL config."""
    text_encoder: dict[str, Any]
    """CLIPTextConfig fields."""

    @property
    def vae_factor(self) -> int:
        return 2 ** (len(self.vae["block_out_channels"]) - 1)

    @property
    def latent_channels(self) -> int:
        return int(self.vae.get("latent_channels", 4))

    @property
    def context_dim(self) -> int:
        return int(self.text_encoder["hidden_size"])

    @property
    def max_tokens(self) -> int:
        return int(self.text_encoder.get("max_position_embeddings", 77))

    @property
    def max_frames(self) -> int | None:
        value = self.unet.get("motion_max_seq_length")
        return int(value) if value else None

    def fingerprint(self) -> str:
        """Short hash of the three configs: equal shapes, equal fingerprint."""
        text = json.dumps([self.unet, self.vae, self.text_encoder], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def unet_fingerprint(self) -> str:
        """Short hash of the UNet config alone (what its FLOPs depend on)."""
        text = json.dumps(self.unet, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int, int]:
        """(1, C, F, h, w) for frames of ``height`` x ``width`` pixels."""
        f = self.vae_factor
        return (1, self.latent_channels, frames, height // f, width // f)

    # meta copies --------------------------------------------------------------------------------
    def build_unet(self, dtype: torch.dtype | None = None, device: str = "meta") -> Any:
        """A frozen UNetMotionModel in eval mode (random weights unless on meta)."""
        import torch
        from diffusers import UNetMotionModel

        with torch.device(device):
            unet = UNetMotionModel.from_config(self.unet)
        unet = _cast(unet, dtype).eval().requires_grad_(False)
        if device == "meta":
            unet.set_attn_processor(MetaAttention())
        return unet

    def build_vae(self, dtype: torch.dtype | None = None, device: str = "meta") -> Any:
        import torch
        from diffusers import AutoencoderKL

        with torch.device(device):
            vae = AutoencoderKL.from_config(self.vae)
        vae = _cast(vae, dtype).eval().requires_grad_(False)
        if device == "meta":
            vae.set_attn_processor(MetaAttention())
        return vae

    def build_text_encoder(self, dtype: torch.dtype | None = None, device: str = "meta") -> Any:
        import torch
        from transformers import CLIPTextConfig, CLIPTextModel

        config = CLIPTextConfig(**self.text_encoder)
        with torch.device(device):
            encoder = CLIPTextModel(config)
        return _cast(encoder, dtype).eval().requires_grad_(False)

    # where architectures come from --------------------------------------------------------------
    @classmethod
    def from_model(cls, model: DiffusionModel, name: str = "loaded") -> Architecture:
        unet: Any = model.unet
        vae: Any = model.vae
        return cls(
            name=name,
            unet=_plain(unet.config),
            vae=_vae_config(json.dumps(_plain(vae.config))),
            text_encoder=_text_fields(model.text_encoder.config),
        )

    @classmethod
    def from_folder(cls, folder: Path, motion_adapter: Path | None = None) -> Architecture:
        """From a diffusers pipeline folder (AnimateDiff, or SD1.5 plus ``motion_adapter``, a
        MotionAdapter folder; AnimateDiff v3's shape when neither has motion modules)."""
        folder = Path(folder)
        unet = _read(folder / "unet" / "config.json")
        if unet.get("_class_name") != "UNetMotionModel":
            adapter_dir = motion_adapter or folder / "motion_adapter"
            adapter_file = Path(adapter_dir) / "config.json"
            if not adapter_file.is_file():
                adapter_file = CONFIG_DIR / "animatediff-v3" / "config.json"
            unet = _motion_config(json.dumps(unet), json.dumps(_read(adapter_file)))
        return cls(
            name=folder.name,
            unet=_plain(unet),
            vae=_vae_config(json.dumps(_read(folder / "vae" / "config.json"))),
            text_encoder=_text_fields(_read(folder / "text_encoder" / "config.json")),
        )


@functools.lru_cache(maxsize=8)
def named(name: str) -> Architecture:
    """``sd15-animatediff-v3`` (the configs vdir ships), ``tiny`` or ``toy``."""
    if name == SD15_ANIMATEDIFF:
        sd15 = CONFIG_DIR / "sd15"
        unet = _motion_config(
            json.dumps(_read(sd15 / "unet" / "config.json")),
            json.dumps(_read(CONFIG_DIR / "animatediff-v3" / "config.json")),
        )
        return Architecture(
            name=name,
            unet=_plain(unet),
            vae=_vae_config(json.dumps(_read(sd15 / "vae" / "config.json"))),
            text_encoder=_text_fields(_read(sd15 / "text_encoder" / "config.json")),
        )
    if name == "tiny":
        from videodirector_cli.diffusion import tiny

        unet = _motion_config(json.dumps(tiny.UNET2D_CONFIG), json.dumps(tiny.ADAPTER_CONFIG))
        return Architecture(
            name=name,
            unet=_plain(unet),
            vae=_vae_config(json.dumps(tiny.VAE_CONFIG)),
            text_encoder=_text_fields(tiny.text_encoder_fields()),
        )
    if name == "toy":
        toy = Path(__file__).resolve().parents[1] / "toy" / "weights"
        return dataclasses.replace(Architecture.from_folder(toy), name="toy")
    raise ValueError(f"unknown architecture {name!r}; known: {', '.join(NAMES)}")


def _cast(module: Any, dtype: torch.dtype | None) -> Any:
    """torch's own Module.to: diffusers' override warns about fp32 modules it would keep."""
    import torch

    if dtype is None or dtype == torch.float32:
        return module
    return torch.nn.Module.to(module, dtype=dtype)


def architecture_for(model: str | None, motion_adapter: str | None = None) -> Architecture:
    """The architecture ``--model`` / ``--motion-adapter`` name, read without any weights.

    Built-in names give their own; a local diffusers folder gives its configs (with a local
    MotionAdapter folder's when one is named); everything else (hub ids, single SD1.5 files,
    the default) has the shape of SD1.5 + AnimateDiff v3, which every model vdir loads shares.
    """
    name = (model or "").strip()
    if name in ("tiny", "toy"):
        return named(name)
    folder = Path(name).expanduser() if name else None
    if folder is not None and (folder / "unet" / "config.json").is_file():
        adapter = Path(motion_adapter).expanduser() if motion_adapter else None
        if adapter is not None and not (adapter / "config.json").is_file():
            adapter = None  # an original motion-module file: AnimateDiff v3's shape
        return Architecture.from_folder(folder, adapter)
    return named(SD15_ANIMATEDIFF)


def _read(path: Path) -> dict[str, Any]:
    return dict(json.loads(Path(path).read_text()))


_TEXT_KEYS = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "max_position_embeddings",
    "hidden_act",
    "layer_norm_eps",
    "projection_dim",
    "bos_token_id",
    "eos_token_id",
    "pad_token_id",
)


def _text_fields(config: Any) -> dict[str, Any]:
    """The fields that shape a CLIP text encoder, with transformers' defaults filled in."""
    from transformers import CLIPTextConfig

    data = config if isinstance(config, dict) else config.to_dict()
    full = CLIPTextConfig(**{k: data[k] for k in _TEXT_KEYS if k in data}).to_dict()
    return {k: full[k] for k in _TEXT_KEYS if k in full}


@functools.lru_cache(maxsize=8)
def _vae_config(vae_json: str) -> dict[str, Any]:
    """An AutoencoderKL config with diffusers' defaults filled in."""
    import torch
    from diffusers import AutoencoderKL

    with torch.device("meta"):
        vae = AutoencoderKL.from_config(json.loads(vae_json))
    return _plain(vae.config)


@functools.lru_cache(maxsize=8)
def _motion_config(unet2d_json: str, adapter_json: str) -> dict[str, Any]:
    """The UNetMotionModel config diffusers derives from a 2D UNet and a motion adapter."""
    import torch
    from diffusers import MotionAdapter, UNet2DConditionModel, UNetMotionModel
    from diffusers.utils import logging

    level = logging.get_verbosity()
    logging.set_verbosity_error()  # from_unet2d's dtype cast warns about an empty module list
    try:
        with torch.device("meta"):
            unet2d = UNet2DConditionModel.from_config(json.loads(unet2d_json))
            adapter = MotionAdapter.from_config(json.loads(adapter_json))
            unet = UNetMotionModel.from_unet2d(unet2d, adapter, load_weights=False)
    finally:
        logging.set_verbosity(level)
    return _plain(unet.config)


class MetaAttention:
    """diffusers' default attention (projections, optional group norm, 4-D inputs, residual,
    rescale) with ``projection.sdpa`` in the middle, for meta-device copies."""

    def __call__(
        self,
        attn,
        hidden_states,
        encoder_hidden_states=None,
        attention_mask=None,
        temb=None,
        *args,
        **kwargs,
    ):
        from videodirector_cli.diffusion.attention.projection import attention_bias, sdpa

        residual = hidden_states
        image_shape = None
        if hidden_states.ndim == 4:
            image_shape = hidden_states.shape
            b, c, h, w = image_shape
            hidden_states = hidden_states.view(b, c, h * w).transpose(1, 2)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        batch = hidden_states.shape[0]
        source = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        if encoder_hidden_states is not None and attn.norm_cross:
            source = attn.norm_encoder_hidden_states(source)
        query, key, value = attn.to_q(hidden_states), attn.to_k(source), attn.to_v(source)
        head_dim = key.shape[-1] // attn.heads

        def split(x):
            return x.view(batch, -1, attn.heads, head_dim).transpose(1, 2)

        query, key, value = split(query), split(key), split(value)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        bias = attention_bias(attn, attention_mask, batch, key.shape[2])
        out = sdpa(query, key, value, attn.scale, bias)
        out = out.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim).to(query.dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        if image_shape is not None:
            out = out.transpose(-1, -2).reshape(image_shape)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor
