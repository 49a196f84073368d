"""A shuffling sampler that is deterministic per epoch, splits data across ranks and can resume mid-epoch."""

from __future__ import annotations

from collections.abc import Iterator, Sized

import torch.distributed as dist
from monai.data import DistributedSampler


class ResumableSampler(DistributedSampler):
    """`monai.data.DistributedSampler` that also works in a single process and can skip a resumed prefix.

    The order of epoch ``e`` depends only on ``(seed, e)``, and MONAI's workflows call ``set_epoch`` at
    every epoch start. After a resume in the middle of an epoch, :meth:`skip_next` drops the samples that
    the interrupted run had already consumed, so the resumed run sees the same batches as an
    uninterrupted one.

    Args:
        dataset: anything with a length.
        shuffle: reshuffle every epoch.
        seed: shuffling seed (the same on every rank).
        num_replicas, rank: default to the initialised process group, else a single process.
    """

    def __init__(
        self,
        dataset: Sized,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
    ):
        distributed = dist.is_available() and dist.is_initialized()
        if num_replicas is None:
            num_replicas = dist.get_world_size() if distributed else 1
        if rank is None:
            rank = dist.get_rank() if distributed else 0
        super().__init__(
            dataset, even_divisible=True, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed
        )
        self._skip = 0
        self.last_indices: list[int] = []

    def skip_next(self, num_samples: int) -> None:
        """Drop the first ``num_samples`` indices of the next iteration over this sampler (once)."""
        self._skip = int(num_samples)

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        skip, self._skip = self._skip, 0
        self.last_indices = indices[skip:]
        return iter(self.last_indices)
