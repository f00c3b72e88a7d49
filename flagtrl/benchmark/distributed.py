"""Split a benchmark over processes: the rank and world size that `torchrun` / `accelerate launch` set, a barrier, and
the sum of the ranks' run counts. One process (no `WORLD_SIZE`, or 1) needs none of it and never imports torch."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta


# An LLM run can take hours and the ranks' shares finish at different times: the barrier must outwait them.
BARRIER_TIMEOUT = timedelta(days=7)


@dataclass
class ProcessGroup:
    """This process's place among the benchmark's processes.

    Args:
        rank (`int`): 0 .. world_size - 1; rank 0 writes the report.
        world_size (`int`): Number of processes.
    """

    rank: int = 0
    world_size: int = 1

    @classmethod
    def from_environment(cls) -> ProcessGroup:
        """Read `RANK` / `WORLD_SIZE` and, with more than one process, join the gloo process group (CPU collectives
        work on every machine; each rank's LLM goes to the GPU of its `LOCAL_RANK` when there are GPUs).

        Raises:
            `ValueError`: when the variables are not whole numbers or the rank is outside the world.
        """
        try:
            world_size, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
        except ValueError:
            raise ValueError(
                f"RANK={os.environ.get('RANK')!r} and WORLD_SIZE={os.environ.get('WORLD_SIZE')!r} must be whole "
                "numbers (torchrun and accelerate launch set them)."
            ) from None
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"RANK={rank} is outside WORLD_SIZE={world_size}.")
        group = cls(rank, world_size)
        if world_size > 1:
            import torch
            import torch.distributed as dist

            if torch.cuda.is_available():
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", rank)) % torch.cuda.device_count())
            if not dist.is_initialized():
                dist.init_process_group(backend="gloo", timeout=BARRIER_TIMEOUT)
        return group

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()

    def sum_counts(self, counts: dict[str, int]) -> dict[str, int]:
        """Each key summed over the ranks."""
        if self.world_size == 1:
            return dict(counts)
        import torch.distributed as dist

        gathered: list[dict[str, int] | None] = [None] * self.world_size
        dist.all_gather_object(gathered, counts)
        return {key: sum(c[key] for c in gathered) for key in counts}

    def close(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
