"""Multi-process training with torchrun: process group set-up and keeping ranks in step.

``torchrun --nproc_per_node=N train.py -c conf/wave.yml`` sets WORLD_SIZE/RANK/LOCAL_RANK; a plain
``python train.py`` has none of them and runs with world size 1 and no process group at all.
Ranks agree on "stop" flags (a signal arrived, an error happened) through a small CPU (gloo)
group, so one rank's error or Ctrl-C stops every rank at the same step instead of leaving the
others waiting forever in a gradient all-reduce.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable, Optional, Sequence, TypeVar

import torch
import torch.distributed as dist

from ..core.errors import FastNSTError

__all__ = ["DistContext", "OtherRankFailed", "init_distributed", "shutdown"]

T = TypeVar("T")


class OtherRankFailed(FastNSTError):
    """Raised on the ranks that did not fail themselves; the failing rank prints the reason."""


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    control: Optional[object] = None  # gloo process group for flags

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def agree(self, flags: Sequence[int]) -> list[int]:
        """Element-wise maximum of ``flags`` over all ranks (a no-op without a process group)."""
        if not self.enabled:
            return list(flags)
        t = torch.tensor(list(flags), dtype=torch.int64)
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.control)
        return t.tolist()

    def together(self, fn: Callable[[], T], what: str) -> T:
        """Run ``fn`` on every rank; if it raises a user error on any rank, every rank raises."""
        error: Optional[FastNSTError] = None
        result = None
        try:
            result = fn()
        except FastNSTError as e:
            error = e
        (failed,) = self.agree([1 if error else 0])
        if error is not None:
            raise error
        if failed:
            raise OtherRankFailed(f"rank {self.rank}: stopping because another process failed while "
                                  f"{what} (its error message is printed above).")
        return result  # type: ignore[return-value]

    def from_main(self, fn: Callable[[], T], what: str) -> T:
        """``fn()`` run on rank 0 only, its result (picklable) given to every rank: work whose
        answer is the same everywhere done once, not once per process. A user error on rank 0
        raises on every rank, as :meth:`together`."""
        result = self.together(lambda: fn() if self.is_main else None, what)
        if not self.enabled:
            return result  # type: ignore[return-value]
        box = [result]
        dist.broadcast_object_list(box, src=0, group=self.control)
        return box[0]  # type: ignore[return-value]

    def barrier(self) -> None:
        """Wait until every rank is here (a no-op without a process group). Before leaving the
        group: a rank that destroyed its gloo group while another still used it was seen to end
        in an abort ("terminate called without an active exception") at exit."""
        if self.enabled:
            dist.barrier(group=self.control)

    def all_mean(self, values: torch.Tensor) -> torch.Tensor:
        """Mean of ``values`` over ranks (for logging)."""
        if not self.enabled:
            return values
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
        return values / self.world_size


def init_distributed(device_setting: str) -> DistContext:
    """Join the process group if launched by torchrun (WORLD_SIZE > 1); NCCL on GPUs, gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_setting != "cpu" and torch.cuda.is_available()
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise FastNSTError(
                f"torchrun started process LOCAL_RANK={local_rank}, but this machine has only "
                f"{torch.cuda.device_count()} CUDA device(s): set --nproc_per_node to at most "
                f"{torch.cuda.device_count()} (one process per GPU).")
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        # 30 minutes: long enough for rank 0 to download VGG16 weights while the others wait.
        dist.init_process_group("nccl" if use_cuda else "gloo", timeout=timedelta(minutes=30))
    control = dist.new_group(backend="gloo") if use_cuda else None
    return DistContext(rank, world, local_rank, control)


def shutdown(ctx: DistContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()
