"""The memory options' mechanics, each a context manager that leaves the model as it found it
(what they trade and when they apply: memory.py). The weights are frozen, so an offloaded
module goes back to the CPU by dropping its device copy (no copy back)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from videodirector_cli.diffusion.components import DiffusionModel


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


def model_device(model: DiffusionModel) -> torch.device:
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
    device = torch.device(execution_device) if execution_device else model_device(model)
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
