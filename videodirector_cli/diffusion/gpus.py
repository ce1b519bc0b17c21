"""GPU classes for time estimates: dense bf16 tensor throughput from the vendors' data sheets.

Peak figures are NVIDIA's dense numbers (without structured sparsity, which halves the
"up to" figures on the data sheets), bf16 inputs with fp32 accumulation, as PyTorch's bf16
matmuls and convolutions run. A UNet never reaches them: convolutions, normalisation and
memory-bound elementwise work keep real utilisation well below the peak, so time estimates use
``UTILISATION`` (a stated assumption until benchmarks/gpu.py has measured it on each class).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

UTILISATION = (0.25, 0.55)
"""Assumed share of the dense bf16 peak a UNet step achieves (low, high)."""


@dataclass(frozen=True)
class GpuClass:
    key: str
    name: str
    bf16_tflops: float
    """Dense bf16 tensor-core peak, TFLOP/s (data sheet)."""
    memory_gib: float
    host_gbps: float
    """Host-to-device copy rate assumed for offloading, GB/s (PCIe 5.0 x16 ~50, 4.0 x16 ~25)."""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


GPUS: dict[str, GpuClass] = {
    gpu.key: gpu
    for gpu in (
        GpuClass("h200", "NVIDIA H200 SXM", 989.0, 141.0, 50.0),
        GpuClass("h100", "NVIDIA H100 SXM", 989.0, 80.0, 50.0),
        GpuClass("h100-pcie", "NVIDIA H100 PCIe", 756.0, 80.0, 50.0),
        GpuClass("a100", "NVIDIA A100 80GB", 312.0, 80.0, 25.0),
        GpuClass("a100-40gb", "NVIDIA A100 40GB", 312.0, 40.0, 25.0),
        GpuClass("l40s", "NVIDIA L40S", 362.0, 48.0, 25.0),
        GpuClass("a10", "NVIDIA A10", 125.0, 24.0, 25.0),
        GpuClass("l4", "NVIDIA L4", 121.0, 24.0, 25.0),
        GpuClass("rtx4090", "NVIDIA GeForce RTX 4090", 165.2, 24.0, 25.0),
        GpuClass("rtx3090", "NVIDIA GeForce RTX 3090", 71.0, 24.0, 25.0),
    )
}


def gpu_class(name: str) -> GpuClass:
    """A class by key or by a name as torch.cuda.get_device_name reports it."""
    text = name.strip().lower().replace("nvidia", "").replace("geforce", "").strip()
    compact = text.replace(" ", "").replace("-", "")
    for gpu in GPUS.values():
        if compact == gpu.key.replace("-", ""):
            return gpu
    for key in sorted(GPUS, key=len, reverse=True):  # 'H100 PCIe' before 'H100'
        gpu = GPUS[key]
        if gpu.name.lower().replace("nvidia", "").replace("geforce", "").strip() in text:
            return gpu
    for key in sorted(GPUS, key=len, reverse=True):
        if key.replace("-", "") in compact:
            if key == "a100" and "40gb" in compact:
                return GPUS["a100-40gb"]
            return GPUS[key]
    raise KeyError(f"unknown GPU class {name!r}; known: {', '.join(GPUS)}")


def seconds(flop: float, gpu: GpuClass, utilisation: tuple[float, float] = UTILISATION):
    """(fastest, slowest) seconds for ``flop`` FLOPs at the utilisation range."""
    high, low = max(utilisation), min(utilisation)
    return flop / (gpu.bf16_tflops * 1e12 * high), flop / (gpu.bf16_tflops * 1e12 * low)
