"""A memory accountant for the meta device: live tensor bytes through forward and backward.

``MemoryTracker`` is a TorchDispatchMode: every tensor an operation returns (in the forward, in
autograd's backward, in a checkpoint's recomputation) is charged with its storage's size,
rounded up like CUDA's caching allocator, and credited back when the storage dies (a weakref
finaliser on the storage object). ``peak`` is then the most bytes alive at once, which on a
GPU is what ``torch.cuda.max_memory_allocated`` reports for the same work, minus what this
cannot see: kernels' private workspaces (cuDNN, cuBLAS), the CUDA context (not part of
max_memory_allocated either) and the allocator's fragmentation (memory reserved but not
allocated). Views share their base's storage and are charged once.

Tensors that existed before the tracker started (weights, inputs) are not charged; add them
with ``hold``.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

ALLOCATION_ROUNDING = 512
"""CUDA's caching allocator hands out blocks in multiples of 512 bytes."""


def rounded(nbytes: int) -> int:
    return -(-nbytes // ALLOCATION_ROUNDING) * ALLOCATION_ROUNDING


def tensor_bytes(tensors: Any) -> int:
    """Bytes of the distinct storages of ``tensors`` (a module, a tensor or an iterable)."""
    if isinstance(tensors, torch.nn.Module):
        tensors = [*tensors.parameters(), *tensors.buffers()]
    elif isinstance(tensors, torch.Tensor):
        tensors = [tensors]
    seen: set[int] = set()
    total = 0
    for tensor in tensors:
        storage = tensor.untyped_storage()
        if id(storage) not in seen:
            seen.add(id(storage))
            total += rounded(storage.nbytes())
    return total


class MemoryTracker(TorchDispatchMode):
    """Current and peak bytes of the tensors created while active (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.current = 0
        self.peak = 0
        self._live: set[int] = set()
        self._held = 0

    def hold(self, nbytes: int) -> None:
        """Charge bytes that live throughout (weights, inputs made before tracking)."""
        self._held += nbytes
        self.current += nbytes
        self.peak = max(self.peak, self.current)

    def release(self, nbytes: int) -> None:
        self._held -= nbytes
        self.current -= nbytes

    def reset_peak(self) -> None:
        self.peak = self.current

    def _charge(self, tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        key = id(storage)
        if key in self._live:
            return
        nbytes = rounded(storage.nbytes())
        self._live.add(key)
        self.current += nbytes
        if self.current > self.peak:
            self.peak = self.current
        weakref.finalize(storage, self._credit, key, nbytes)

    def _credit(self, key: int, nbytes: int) -> None:
        if key in self._live:
            self._live.discard(key)
            self.current -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {
            id(x.untyped_storage())
            for x in tree_flatten((args, kwargs))[0]
            if isinstance(x, torch.Tensor)
        }
        for item in tree_flatten(out)[0]:
            # an output on an input's storage is a view or an in-place result: no new memory
            if isinstance(item, torch.Tensor) and id(item.untyped_storage()) not in inputs:
                self._charge(item)
        return out
