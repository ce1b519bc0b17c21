"""Spatial-temporal decoupled guidance (STDG, paper eq. 2-5).

At step t the UNet runs twice with the source prompt, both forwards stopped after the last layer
the loss reads: once at the pivot z*_t (no gradient: the reference features) and once at the
current latent z_t (with gradient). One weighted loss

    L = (h w / 64^2) [mean_l w_b(l) (eta_f T_l^f + eta_b T_l^b) + mean_l w_b(l) (zeta_f K_l^f
        + zeta_b K_l^b)]     (l: the motion layers, then the key layers, of all chosen blocks)

gives, with ONE backward pass, G = dL/dz_t = eta_f G_T^f + eta_b G_T^b + zeta_f G_K^f + zeta_b G_K^b
(the paper's sum of four gradients, by linearity). Terms:

- T (motion): temporal-attention probabilities of the motion modules in ``blocks`` (attn1 and
  attn2, both self-attention across frames). For each (pixel, head, query frame) row, the top-k
  key frames of the reference map are compared (MSE of the probabilities at those indices);
  rows are restricted to the foreground (or background) by the mask at the layer's resolution.
- K (appearance): spatial self-attention keys (attn1 of the spatial transformers in ``blocks``),
  averaged per frame over the masked pixels; MSE between reference and current means.

Block weights combine as the reference's (additional_components.py): per term kind (motion,
appearance), each LAYER's loss times its block's weight, averaged over all layers of all chosen
blocks (``weighted_layer_mean``). With equal layer counts per block and the defaults (20000,
10000) that is 10000 * mean(up_blocks.1) + 5000 * mean(up_blocks.2). The total is then
multiplied by ``size_factor`` = h * w / 64^2 of the latent (exactly 1 for SD1.5 at 512x512, the
reference's setting): a mean over N latent positions has per-element gradients ~ 1/N, so the
factor keeps G per element the same at any latent size (docs/inversion.md).

A zero coefficient skips
its term; if all motion (or all appearance) terms are zero their layers are not even recorded;
all four zero -> no pass at all. The mask is resized to each layer by area: a layer pixel is
foreground when at least half of the frame pixels it covers are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from videodirector_cli.diffusion.attention.capture import FeatureRecorder, capture_processors
from videodirector_cli.diffusion.attention.layers import layers_of
from videodirector_cli.diffusion.attention.swap import swapped_processors
from videodirector_cli.diffusion.passes import PassCounter
from videodirector_cli.diffusion.unet_call import run_until
from videodirector_cli.errors import UsageError

if TYPE_CHECKING:
    import torch

    from videodirector_cli.diffusion.windows import WindowPlan
    from videodirector_cli.settings.invert import STDGSettings


TOP_K = 1
"""Entries of each reference temporal-attention row that are compared (the reference's 1)."""


def coefficients(settings: STDGSettings, has_mask: bool) -> dict[str, float]:
    """eta_f, eta_b, zeta_f, zeta_b as applied: swapped for background edits; without a mask
    the whole frame is foreground and the background terms vanish."""
    eta_f, eta_b = settings.eta_f, settings.eta_b
    zeta_f, zeta_b = settings.zeta_f, settings.zeta_b
    if settings.target == "background":
        eta_f, eta_b, zeta_f, zeta_b = eta_b, eta_f, zeta_b, zeta_f
    if not has_mask:
        eta_b = zeta_b = 0.0
    return {"eta_f": eta_f, "eta_b": eta_b, "zeta_f": zeta_f, "zeta_b": zeta_b}


def check_blocks(unet, blocks: tuple[str, ...]) -> None:
    """--stdg-blocks must name blocks that hold motion modules in this UNet."""
    have = sorted({layer.block for layer in layers_of(unet, "temporal")})
    missing = [b for b in blocks if b not in have]
    if missing:
        raise UsageError(
            f"--stdg-blocks: {', '.join(missing)} has no motion modules in this model",
            hint=f"choose from {', '.join(have)}",
        )


@dataclass
class Features:
    temporal: dict[str, torch.Tensor]
    keys: dict[str, torch.Tensor]


class STDG:
    """STDG for one video: its masks, model and coefficients; computes G per step."""

    def __init__(
        self,
        unet,
        settings: STDGSettings,
        masks: torch.Tensor | None,
        latent_size: tuple[int, ...],
        counter: PassCounter | None = None,
    ) -> None:
        """``masks``: (F, H, W) bool at frame resolution, or None (whole frame foreground)."""
        self.unet = unet
        self.settings = settings
        self.masks = masks
        self.latent_size = latent_size
        self.counter = counter
        self.coef = coefficients(settings, masks is not None)
        self.uses_temporal = self.coef["eta_f"] != 0 or self.coef["eta_b"] != 0
        self.uses_keys = self.coef["zeta_f"] != 0 or self.coef["zeta_b"] != 0
        self._temporal_layers = layers_of(unet, "temporal", settings.blocks)
        self._key_layers = layers_of(unet, "spatial_self", settings.blocks)
        missing = [
            b for b in settings.blocks if not any(x.block == b for x in self._temporal_layers)
        ]
        if missing:
            raise ValueError(f"no motion modules in {', '.join(missing)}")
        self.last_fraction = 1.0
        self._mask_cache: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def active(self) -> bool:
        return self.uses_temporal or self.uses_keys

    @property
    def stop_modules(self) -> list[str]:
        names = []
        if self.uses_temporal:
            names += [layer.module_name for layer in self._temporal_layers]
        if self.uses_keys:
            names += [layer.module_name for layer in self._key_layers]
        return names

    # features ---------------------------------------------------------------------------------
    def features(
        self, latent: torch.Tensor, timestep: int, cond: torch.Tensor, purpose: str
    ) -> Features:
        """Run the UNet up to the last layer the loss reads; keep the recorded features."""
        recorder = FeatureRecorder()
        processors = capture_processors(
            self.unet, recorder, self.settings.blocks, self.uses_temporal, self.uses_keys
        )
        with swapped_processors(self.unet, processors):
            self.last_fraction = run_until(
                self.unet,
                latent,
                timestep,
                cond,
                self.stop_modules,
                counter=self.counter,
                purpose=purpose,
            )
        return Features(dict(recorder.temporal), dict(recorder.keys))

    def reference(self, pivot: torch.Tensor, timestep: int, cond: torch.Tensor) -> Features:
        import torch

        with torch.no_grad():
            found = self.features(pivot, timestep, cond, "stdg-reference")
        return Features(
            {k: v.detach() for k, v in found.temporal.items()},
            {k: v.detach() for k, v in found.keys.items()},
        )

    # loss -------------------------------------------------------------------------------------
    def loss(
        self, current: Features, reference: Features, window: slice | None = None
    ) -> torch.Tensor:
        """The weighted STDG loss of ``current`` against ``reference`` (a 0-dim tensor);
        ``window``: the clip's frames the features hold (None: all)."""
        import torch

        any_feature = next(iter({**current.temporal, **current.keys}.values()))
        total = torch.zeros((), dtype=torch.float32, device=any_feature.device)
        weight_of = dict(zip(self.settings.blocks, self.settings.block_weights, strict=True))
        if self.uses_temporal:
            total = total + weighted_layer_mean(
                [
                    self._temporal_term(
                        current.temporal[x.name], reference.temporal[x.name], window
                    )
                    for x in self._temporal_layers
                ],
                [weight_of[x.block] for x in self._temporal_layers],
            )
        if self.uses_keys:
            total = total + weighted_layer_mean(
                [
                    self._key_term(current.keys[x.name], reference.keys[x.name], window)
                    for x in self._key_layers
                ],
                [weight_of[x.block] for x in self._key_layers],
            )
        return total * size_factor(self.latent_size)

    def _temporal_term(
        self, current: torch.Tensor, reference: torch.Tensor, window: slice | None = None
    ) -> torch.Tensor:
        """current/reference: (H*W, heads, F, F) for one video."""
        import torch

        pixels, heads, frames, _ = reference.shape
        k = min(TOP_K, frames)
        index = reference.topk(k, dim=-1).indices
        diff = (current.float().gather(-1, index) - reference.float().gather(-1, index)) ** 2
        diff = diff.sum(dim=(1, 3))  # (pixels, query frames)
        fg, bg = self._masks_at(pixels, frames, window)
        term = torch.zeros((), dtype=torch.float32, device=diff.device)
        for coef, mask in ((self.coef["eta_f"], fg), (self.coef["eta_b"], bg)):
            rows = mask.T.to(diff.device)  # (pixels, frames)
            if coef != 0 and bool(rows.any()):
                term = term + coef * (diff * rows).sum() / (rows.sum() * heads * k)
        return term

    def _key_term(
        self, current: torch.Tensor, reference: torch.Tensor, window: slice | None = None
    ) -> torch.Tensor:
        """current/reference: (F, H*W, C) keys for one video."""
        import torch

        frames, pixels, _ = reference.shape
        fg, bg = self._masks_at(pixels, frames, window)
        term = torch.zeros((), dtype=torch.float32, device=current.device)
        for coef, mask in ((self.coef["zeta_f"], fg), (self.coef["zeta_b"], bg)):
            if coef == 0:
                continue
            weights = mask.to(device=current.device, dtype=torch.float32)  # (F, pixels)
            counts = weights.sum(dim=1)
            valid = counts > 0
            if not bool(valid.any()):
                continue
            cur = torch.einsum("fp,fpc->fc", weights, current.float())[valid]
            ref = torch.einsum("fp,fpc->fc", weights, reference.float())[valid]
            scale = counts[valid].unsqueeze(1)
            term = term + coef * ((cur - ref) / scale).pow(2).mean()
        return term

    def _masks_at(
        self, pixels: int, frames: int, window: slice | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(foreground, background), each (frames, pixels) bool, at the layer whose size is
        ``pixels``, for the clip's frames in ``window`` (None: all of them)."""
        import torch
        import torch.nn.functional as F

        size = layer_size(self.latent_size, pixels)
        if self.masks is None:
            fg = torch.ones((frames, size[0] * size[1]), dtype=torch.bool)
            return fg, ~fg
        if size not in self._mask_cache:
            area = F.interpolate(self.masks.float().unsqueeze(1), size=size, mode="area")
            full = (area.squeeze(1) >= 0.5).reshape(self.masks.shape[0], -1)
            self._mask_cache[size] = (full, ~full)
        fg, bg = self._mask_cache[size]
        if window is not None:
            fg, bg = fg[window], bg[window]
        if fg.shape[0] != frames:
            raise ValueError(f"masks for {fg.shape[0]} frames, features of {frames}")
        return fg, bg

    # guidance ---------------------------------------------------------------------------------
    def guidance(
        self,
        latent: torch.Tensor,
        pivot: torch.Tensor,
        timestep: int,
        cond: torch.Tensor,
        reference: Features | None = None,
    ) -> tuple[torch.Tensor, float]:
        """(G = dL/dz_t as float32 like ``latent``, L). Zero without passes when nothing to do:
        all coefficients zero, or z_t equal to the pivot (the loss and its gradient are 0)."""
        import torch

        if not self.active or torch.equal(latent, pivot):
            return torch.zeros_like(latent, dtype=torch.float32), 0.0
        if reference is None:
            reference = self.reference(pivot, timestep, cond)
        return self._gradient(latent, timestep, cond, reference, None)

    def _gradient(
        self,
        latent: torch.Tensor,
        timestep: int,
        cond: torch.Tensor,
        reference: Features,
        window: slice | None,
    ) -> tuple[torch.Tensor, float]:
        import torch

        current_latent = latent.detach().to(torch.float32).requires_grad_(True)
        with torch.enable_grad():
            current = self.features(current_latent, timestep, cond, "stdg")
            loss = self.loss(current, reference, window)
            (grad,) = torch.autograd.grad(loss, current_latent)
        if self.counter is not None:
            self.counter.add_backward(fraction=self.last_fraction, purpose="stdg")
        return grad.detach(), float(loss.detach())

    def windowed_guidance(
        self,
        latent: torch.Tensor,
        pivot: torch.Tensor,
        timestep: int,
        cond: torch.Tensor,
        plan: WindowPlan | None,
    ) -> tuple[torch.Tensor, float]:
        """``guidance`` through the windows of ``plan`` (one window or None: exactly
        ``guidance``). Each window's loss reads its own frames and masks and is differentiated
        alone, so one window's activations are alive at a time; the gradients are blended with
        the plan's weights (a frame inside one window gets that window's G) and the loss is the
        mean over windows."""
        import torch

        from videodirector_cli.diffusion.windows import blend, slice_embeddings

        if plan is None or plan.single:
            return self.guidance(latent, pivot, timestep, cond)
        if not self.active or torch.equal(latent, pivot):
            return torch.zeros_like(latent, dtype=torch.float32), 0.0
        losses: list[float] = []
        batch, frames = latent.shape[0], latent.shape[2]

        def one(part: slice) -> torch.Tensor:
            text = slice_embeddings(cond, batch, frames, part)
            reference = self.reference(pivot[:, :, part], timestep, text)
            grad, loss = self._gradient(latent[:, :, part], timestep, text, reference, part)
            losses.append(loss)
            return grad

        return blend(plan, latent, one), sum(losses) / len(losses)

    def loss_at(
        self, latent: torch.Tensor, timestep: int, cond: torch.Tensor, reference: Features
    ) -> float:
        """The loss of ``latent`` against ``reference`` features, without gradient."""
        import torch

        with torch.no_grad():
            return float(self.loss(self.features(latent, timestep, cond, "stdg-eval"), reference))


REFERENCE_LATENT_CELLS = 64 * 64
"""Latent positions of SD1.5 at 512x512, where the reference tuned its weights."""


def weighted_layer_mean(losses: list[torch.Tensor], weights: list[float]) -> torch.Tensor:
    """mean over layers of (block weight x layer loss): the reference's stack-then-mean (its
    /100 before and x100 after cancel)."""
    import torch

    if len(losses) != len(weights) or not losses:
        raise ValueError(f"{len(losses)} layer losses for {len(weights)} weights")
    stacked = torch.stack([loss.float() for loss in losses])
    factors = torch.tensor(weights, dtype=torch.float32, device=stacked.device)
    return (stacked * factors).mean()


def size_factor(latent_size: tuple[int, ...]) -> float:
    """h * w / 64^2: 1 at the reference's latent size; keeps G per element size-independent."""
    h, w = latent_size[-2], latent_size[-1]
    return h * w / REFERENCE_LATENT_CELLS


def layer_size(latent_size: tuple[int, ...], pixels: int) -> tuple[int, int]:
    """The (h, w) of the UNet level with ``pixels`` tokens (each level halves, rounding up)."""
    h, w = latent_size
    while h * w > pixels and (h > 1 or w > 1):
        h, w = math.ceil(h / 2), math.ceil(w / 2)
    if h * w != pixels:
        raise ValueError(f"no UNet level of a {latent_size} latent has {pixels} positions")
    return h, w
