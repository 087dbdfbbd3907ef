"""Work for launched ranks that fails on purpose (tests/test_data_parallel.py): imported by the
launched processes themselves, so it imports nothing heavy."""

from __future__ import annotations

from typing import Any


def out_of_cuda_memory_on_rank_1(ctx: Any, rank: Any, plan: dict[str, Any]) -> None:
    """Rank 1 fails as a CUDA allocation does (torch's own class); rank 0 finishes."""
    if rank.index == 1:
        import torch

        raise torch.OutOfMemoryError(
            f"CUDA out of memory. Tried to allocate {plan['gib']:.2f} GiB")


def a_bug_on_every_rank(ctx: Any, rank: Any, plan: dict[str, Any]) -> None:
    """Every rank fails with an error that is no known fault."""
    raise KeyError(f"no column {plan['column']!r} on rank {rank.index}")
