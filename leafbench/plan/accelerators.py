"""Accelerators the plan can price: peak dense bf16 tensor FLOP/s, memory and bandwidth.

Figures are the vendors' published datasheet values for dense (not 2:4 sparse) bf16 matrix
math, per GPU: NVIDIA's H100 / H200 / A100 / L40S / HGX B200 datasheets and AMD's MI300X
datasheet. A plan's time is FLOPs / (peak × utilisation); 0.3–0.5 is what well-tuned training
reaches on these parts (model FLOPs utilisation), so the default is 0.4 and the flag says so.
"""

from __future__ import annotations

from dataclasses import dataclass

from leafbench.errors import ConfigError


@dataclass(frozen=True)
class Accelerator:
    name: str
    bf16_flops: float  # peak dense bf16 FLOP/s
    memory_gb: float  # memory per GPU, GB (10^9 bytes)
    bandwidth: float  # memory bandwidth, bytes/s
    source: str


ACCELERATORS: dict[str, Accelerator] = {
    a.name: a
    for a in (
        Accelerator("H100-SXM", 989.4e12, 80, 3.35e12, "NVIDIA H100 datasheet (SXM)"),
        Accelerator("H100-PCIe", 756.0e12, 80, 2.0e12, "NVIDIA H100 datasheet (PCIe)"),
        Accelerator("H200", 989.4e12, 141, 4.8e12, "NVIDIA H200 datasheet (SXM)"),
        Accelerator("A100-80GB", 312.0e12, 80, 2.039e12, "NVIDIA A100 datasheet (SXM 80GB)"),
        Accelerator("A100-40GB", 312.0e12, 40, 1.555e12, "NVIDIA A100 datasheet (SXM 40GB)"),
        Accelerator("L40S", 362.05e12, 48, 0.864e12, "NVIDIA L40S datasheet"),
        Accelerator("B200", 2250.0e12, 180, 7.7e12, "NVIDIA HGX B200 datasheet"),
        Accelerator("MI300X", 1307.4e12, 192, 5.3e12, "AMD Instinct MI300X datasheet"),
    )
}


def get_accelerator(name: str) -> Accelerator:
    """Case-insensitive lookup; a ConfigError lists the known names."""
    for known, acc in ACCELERATORS.items():
        if known.lower() == name.lower():
            return acc
    raise ConfigError("plan", "--gpu", name, f"expected one of {sorted(ACCELERATORS)}")
