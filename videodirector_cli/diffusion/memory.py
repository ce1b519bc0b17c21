"""Memory options: trade time for accelerator memory without changing any result.

Three options, each a context manager that leaves the model as it found it:

- ``gradient_checkpointing(unet)``: the backward passes (null-text, STDG) keep only block
  boundaries and recompute the inside of each block when the gradient gets there (diffusers'
  own checkpointing of the UNet's resnets, transformer blocks and motion modules, non-reentrant,
  so it applies although only the input requires a gradient and the weights are frozen);
- ``model_offload(model)``: the text encoder and the VAE live in CPU memory and come to the
  device only while they run (a forward pre-hook brings one in; the UNet's pre-hook sends them
  back); ``sequential_offload(unet)`` does the same for each of the UNet's layers, for cards
  that cannot hold its weights next to the activations. The weights are frozen, so a module
  goes back to the CPU by dropping its device copy (no copy back);
- VAE slices: frames per VAE encode/decode call (``DiffusionModel.vae_frames``, used by
  latents.py): one frame at a time instead of four.

``MemoryPlan`` names a combination: ``fast`` (none), ``low`` (checkpointing, model offload,
VAE one frame per call), ``lowest`` (low + sequential offload). ``use_plan(model, plan)``
applies one for a ``with`` block; ``choose`` picks one for ``--memory auto`` from estimated
peaks (diffusion/estimate.py) and the device's free memory (``free_memory``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

from videodirector_cli.errors import UsageError

if TYPE_CHECKING:
    import torch

    from videodirector_cli.diffusion.components import DiffusionModel

Offload = Literal["none", "model", "sequential"]
CHOICES = ("auto", "fast", "low", "lowest")


@dataclass(frozen=True)
class MemoryPlan:
    name: str
    checkpointing: bool = False
    """Activation checkpointing of the UNet in the passes that run a backward."""
    offload: Offload = "none"
    """'model': text encoder and VAE on the CPU while the UNet runs; 'sequential': also each
    UNet layer's weights, brought to the device for its own forward only."""
    vae_frames: int = 4
    """Frames per VAE encode/decode call."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        parts = []
        if self.checkpointing:
            parts.append("activation checkpointing")
        if self.offload == "model":
            parts.append("text encoder and VAE offloaded to the CPU")
        if self.offload == "sequential":
            parts.append("text encoder, VAE and each UNet layer offloaded to the CPU")
        parts.append(f"VAE {self.vae_frames} frame{'s' if self.vae_frames > 1 else ''} per call")
        return ", ".join(parts)


PLANS: dict[str, MemoryPlan] = {
    "fast": MemoryPlan("fast"),
    "low": MemoryPlan("low", checkpointing=True, offload="model", vae_frames=1),
    "lowest": MemoryPlan("lowest", checkpointing=True, offload="sequential", vae_frames=1),
}
ORDER = ("fast", "low", "lowest")
"""From fastest to leanest; ``next_plan`` walks it (the out-of-memory advice)."""


def plan_named(name: str) -> MemoryPlan:
    """The plan for ``--memory NAME`` (not 'auto': see ``choose``)."""
    key = (name or "").strip().lower()
    if key not in PLANS:
        raise UsageError(
            f"--memory {name!r} is not a memory option", hint=f"use one of {', '.join(CHOICES)}"
        )
    return PLANS[key]


def next_plan(plan: MemoryPlan) -> MemoryPlan | None:
    """The next leaner plan, or None after ``lowest``."""
    index = ORDER.index(plan.name) if plan.name in ORDER else len(ORDER)
    return PLANS[ORDER[index + 1]] if index + 1 < len(ORDER) else None


# ------------------------------------------------------------------------------- auto

SAFETY = 0.9
"""Use at most this share of the free memory: the estimate leaves out kernel workspaces and
the allocator's fragmentation (diffusion/memtrack.py)."""


def free_memory(device: torch.device) -> int | None:
    """Bytes the accelerator can still hand out: CUDA's free memory (torch.cuda.mem_get_info),
    MPS's recommended working set minus what the process holds; None on the CPU."""
    import torch

    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type == "mps":
        mps = getattr(torch, "mps", None)
        recommended = getattr(mps, "recommended_max_memory", None)
        allocated = getattr(mps, "driver_allocated_memory", None)
        if recommended is None or allocated is None:
            return None
        return int(recommended()) - int(allocated())
    return None


@dataclass(frozen=True)
class Choice:
    plan: MemoryPlan
    reason: str


def choose(peaks: Mapping[str, int], free: int | None) -> Choice:
    """``--memory auto``: the fastest plan whose estimated peak fits in ``SAFETY`` x ``free``.

    ``peaks``: plan name -> estimated peak bytes. Without a free-memory figure (the CPU) it
    is ``fast``: offloading to the CPU from the CPU saves nothing and checkpointing only
    trades time for RAM the operating system manages. When nothing fits it is ``lowest``, and
    the reason says by how much it is expected to fall short.
    """
    if free is None:
        return Choice(PLANS["fast"], "no accelerator memory to fit (CPU): fast")
    budget = int(SAFETY * free)
    for name in ORDER:
        if name in peaks and peaks[name] <= budget:
            return Choice(
                PLANS[name],
                f"{name}: estimated peak {gib(peaks[name])} fits in {gib(budget)} "
                f"({SAFETY:.0%} of {gib(free)} free)",
            )
    lowest = peaks.get("lowest")
    return Choice(
        PLANS["lowest"],
        "lowest: nothing fits"
        + ("" if lowest is None else f" (lowest needs about {gib(lowest)}, {gib(budget)} usable)"),
    )


def gib(nbytes: float) -> str:
    value = nbytes / 2**30
    return f"{value:.1f} GiB" if value >= 10 else f"{value:.2f} GiB"


# ------------------------------------------------------------------------------- the options


@contextmanager
def gradient_checkpointing(unet: Any) -> Iterator[None]:
    """Activation checkpointing of ``unet`` for a ``with`` block (off again afterwards unless
    it was on before). Applies only where gradients are enabled: no-grad passes are unchanged."""
    was_on = bool(unet.is_gradient_checkpointing)
    unet.enable_gradient_checkpointing()
    try:
        yield
    finally:
        if not was_on:
            unet.disable_gradient_checkpointing()


Copy = Callable[["torch.Tensor", "torch.device"], "torch.Tensor"]


def _to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    return tensor.to(device, non_blocking=True)


class ParkedTensors:
    """One module's own parameters and buffers (not its children's), kept as masters on the
    offload device; ``load`` puts copies on the execution device, ``unload`` the masters back.

    The slots get new tensor objects each time, so autograd keeps a device copy alive exactly
    as long as a backward still needs it (and activation checkpointing lets it go).
    """

    def __init__(self, module: Any, offload_device: torch.device, pin: bool) -> None:
        self.module = module
        self.masters: dict[tuple[str, str], torch.Tensor] = {}
        for kind in ("_parameters", "_buffers"):
            for name, tensor in getattr(module, kind).items():
                if tensor is None:
                    continue
                master = tensor.detach().to(offload_device)
                if pin and master.device.type == "cpu":
                    master = master.pin_memory()
                self.masters[(kind, name)] = master
        self.loaded = False
        self.unload()

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.masters.values())

    def load(self, device: torch.device, copy: Copy = _to_device) -> None:
        for (kind, name), master in self.masters.items():
            self._put(kind, name, copy(master, device))
        self.loaded = True

    def unload(self) -> None:
        for (kind, name), master in self.masters.items():
            self._put(kind, name, master)
        self.loaded = False

    def _put(self, kind: str, name: str, tensor: torch.Tensor) -> None:
        import torch

        if kind == "_parameters":
            self.module._parameters[name] = torch.nn.Parameter(tensor, requires_grad=False)
        else:
            self.module._buffers[name] = tensor


def _own_tensor_modules(root: Any) -> list[Any]:
    return [
        module
        for module in root.modules()
        if any(t is not None for t in (*module._parameters.values(), *module._buffers.values()))
    ]


class _Component:
    """A whole model component (text encoder, VAE) parked as one."""

    def __init__(self, name: str, root: Any, offload_device: torch.device, pin: bool) -> None:
        self.name = name
        self.root = root
        self.parts = [ParkedTensors(m, offload_device, pin) for m in _own_tensor_modules(root)]
        self.loaded = False

    def load(self, device: torch.device, copy: Copy) -> None:
        if not self.loaded:
            for part in self.parts:
                part.load(device, copy)
            self.loaded = True

    def unload(self) -> None:
        if self.loaded:
            for part in self.parts:
                part.unload()
            self.loaded = False


class ModelOffload:
    """Which component is on the execution device; moves them from forward pre-hooks."""

    def __init__(
        self,
        model: DiffusionModel,
        execution_device: torch.device,
        offload_device: torch.device,
        copy: Copy = _to_device,
    ) -> None:
        pin = execution_device.type == "cuda"
        self.execution_device = execution_device
        self.copy = copy
        self.components = {
            "text_encoder": _Component("text_encoder", model.text_encoder, offload_device, pin),
            "vae": _Component("vae", model.vae, offload_device, pin),
        }
        self.log: list[str] = []
        """Each switch, in order ('text_encoder', 'vae', 'unet'): for tests and debugging."""

    def activate(self, name: str) -> None:
        for other, component in self.components.items():
            if other != name:
                component.unload()
        if name in self.components:
            self.components[name].load(self.execution_device, self.copy)
        if not self.log or self.log[-1] != name:
            self.log.append(name)

    def placement(self) -> dict[str, str]:
        """'device' or 'offloaded' per component."""
        return {k: "device" if c.loaded else "offloaded" for k, c in self.components.items()}


def _execution_device(model: DiffusionModel) -> torch.device:
    import torch

    return torch.device(model.device)


@contextmanager
def model_offload(
    model: DiffusionModel,
    offload_device: str | torch.device = "cpu",
    execution_device: str | torch.device | None = None,
    copy: Copy = _to_device,
) -> Iterator[ModelOffload]:
    """Text encoder and VAE in ``offload_device`` memory except while they run.

    ``execution_device`` defaults to ``model.device``; on exit both components are back on
    the device they were on before.
    """
    import torch

    home = {
        "text_encoder": _first_device(model.text_encoder),
        "vae": _first_device(model.vae),
    }
    device = torch.device(execution_device) if execution_device else _execution_device(model)
    state = ModelOffload(model, device, torch.device(offload_device), copy)
    unet: Any = model.unet
    vae: Any = model.vae
    handles = [
        model.text_encoder.register_forward_pre_hook(lambda m, a: state.activate("text_encoder")),
        unet.register_forward_pre_hook(lambda m, a: state.activate("unet")),
    ]
    for child in vae.children():  # encode/decode call these, never vae.forward
        handles.append(child.register_forward_pre_hook(lambda m, a: state.activate("vae")))
    try:
        yield state
    finally:
        for handle in handles:
            handle.remove()
        for name, component in state.components.items():
            component.unload()
            if home[name] != torch.device(offload_device):
                component.load(home[name], _to_device)


def _first_device(module: Any) -> torch.device:
    import torch

    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device
    return torch.device("cpu")


class SequentialOffload:
    """Each UNet layer's weights on the device only during that layer's forward."""

    def __init__(
        self,
        unet: Any,
        execution_device: torch.device,
        offload_device: torch.device,
        copy: Copy = _to_device,
    ) -> None:
        pin = execution_device.type == "cuda"
        self.parts = [ParkedTensors(m, offload_device, pin) for m in _own_tensor_modules(unet)]
        self.execution_device = execution_device
        self.copy = copy
        self.loads = 0
        """Layer loads so far (for tests and the benchmark)."""

    @property
    def largest_layer_bytes(self) -> int:
        return max((part.nbytes for part in self.parts), default=0)

    def hooks(self) -> list[Any]:
        handles = []
        for part in self.parts:
            handles.append(part.module.register_forward_pre_hook(self._loader(part)))
            handles.append(part.module.register_forward_hook(self._unloader(part)))
        return handles

    def _loader(self, part: ParkedTensors):
        def hook(module, args):
            part.load(self.execution_device, self.copy)
            self.loads += 1

        return hook

    def _unloader(self, part: ParkedTensors):
        def hook(module, args, output):
            part.unload()

        return hook


@contextmanager
def sequential_offload(
    unet: Any,
    execution_device: str | torch.device,
    offload_device: str | torch.device = "cpu",
    copy: Copy = _to_device,
) -> Iterator[SequentialOffload]:
    """Every UNet layer with weights parked in ``offload_device`` memory, loaded by a forward
    pre-hook and dropped by a forward hook; on exit the weights are back where they were."""
    import torch

    home = _first_device(unet)
    state = SequentialOffload(
        unet, torch.device(execution_device), torch.device(offload_device), copy
    )
    handles = state.hooks()
    try:
        yield state
    finally:
        for handle in handles:
            handle.remove()
        for part in state.parts:
            part.unload()
            if home != torch.device(offload_device):
                part.load(home, _to_device)


@contextmanager
def vae_slices(model: DiffusionModel, frames: int) -> Iterator[None]:
    """``frames`` frames per VAE call (latents.py) for a ``with`` block."""
    before = model.vae_frames
    model.vae_frames = max(1, int(frames))
    try:
        yield
    finally:
        model.vae_frames = before


@contextmanager
def use_plan(model: DiffusionModel, plan: MemoryPlan) -> Iterator[MemoryPlan]:
    """Apply ``plan`` to ``model`` for a ``with`` block; the model is as before afterwards."""
    with ExitStack() as stack:
        if plan.checkpointing:
            stack.enter_context(gradient_checkpointing(model.unet))
        if plan.offload in ("model", "sequential"):
            stack.enter_context(model_offload(model))
        if plan.offload == "sequential":
            stack.enter_context(sequential_offload(model.unet, _execution_device(model)))
        stack.enter_context(vae_slices(model, plan.vae_frames))
        yield plan
