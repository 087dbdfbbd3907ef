"""One intra-op thread count for every CPU computation whose numbers are pinned.

Why: torch splits a matrix product or a reduction across its intra-op threads, and the split
decides the order in which float32 partial sums are added. On torch 2.13 (CPU wheel), a testbed
built with 3 threads differs bit for bit from one built with 1, 2, 4 or 8 (measured; the tiny
models' shapes sit at the kernels' parallel grain), and a few flipped greedy answers move the
demo's headline. torch's default is the number of cores it sees, so without a fixed count the
same commit and the same versions give different figures on a 3-, 6- or 12-core machine.
The machine's load does not matter: it changes how fast the threads run, never how the work
is split.

The count is a setting, not the hardware: `CPU_THREADS` threads on a 1-core machine
oversubscribe it (slower, same bits) and on a 64-core machine leave cores idle (same bits).
`LEAFBENCH_CPU_THREADS` overrides it for someone who wants speed over reproducibility of the
recorded figures.

The thread count is not all: the CPU's vector instruction set decides which kernels torch
dispatches to (AVX2 or AVX-512) and which code path MKL's matrix products take, and these add
in other orders too. Measured: an AMD EPYC (Zen 3, AVX2, no AVX-512) builds a different demo
testbed than the machines the README's figures were recorded on (student before 0.100 against
0.135), with the same versions and 2 threads. So figures are exact per `cpu_class()`, which
runs record beside them. The class errs on the narrow side (family and model too, since MKL
also chooses by processor): two machines of one class are expected to agree bit for bit.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterator
from contextlib import contextmanager

CPU_THREADS = 2  # the count the README's and the tests' pinned figures were measured with
ENV = "LEAFBENCH_CPU_THREADS"


def cpu_threads() -> int:
    """The intra-op thread count for pinned CPU work: LEAFBENCH_CPU_THREADS or CPU_THREADS."""
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return CPU_THREADS
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{ENV}={raw!r}: expected a positive whole number of threads")
    return int(raw)


@contextmanager
def fixed_cpu_threads(threads: int | None = None) -> Iterator[int]:
    """Run the block with torch's intra-op thread count set to `threads` (default
    `cpu_threads()`), restoring the caller's count afterwards so a library user or a test
    that chose its own is left as it was."""
    import torch  # here, so importing this module (e.g. from config-only code) stays light

    wanted = cpu_threads() if threads is None else threads
    before = torch.get_num_threads()
    torch.set_num_threads(wanted)
    try:
        yield wanted
    finally:
        torch.set_num_threads(before)


def cpu_class() -> str:
    """What besides the versions and the thread count decides CPU figures: the processor's
    vendor, family and model (MKL's code path and blocking follow the processor) and the vector
    capability torch dispatches to, e.g. "AuthenticAMD 25/1 AVX2" or "GenuineIntel 6/143
    AVX512"."""
    import torch

    info = _cpuinfo()
    vendor = info.get("vendor_id") or platform.processor() or platform.machine() or "unknown"
    model = f" {info['cpu family']}/{info['model']}" if {"cpu family", "model"} <= info.keys() else ""
    return f"{vendor}{model} {torch.backends.cpu.get_cpu_capability()}"


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty where there is none)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if not line.strip():
                    break
                name, _, value = line.partition(":")
                fields.setdefault(name.strip(), value.strip())
    except OSError:
        pass
    return fields
