"""Training data whose order and augmentations are a function of (seed, epoch) alone.

Why: with loader workers, PyTorch seeds each worker once, from the main process's RNG, when the
worker starts (``_BaseDataLoaderIter._base_seed``); persistent workers then continue their own
RNG streams across epochs. A run resumed at epoch e starts fresh workers whose streams differ
from those an uninterrupted run has reached by epoch e, and drawing the new workers' base seed
shifts the main process's RNG as well, so views and everything after them differ. Here the
sampler (in the main process) draws, from a generator seeded by (seed, epoch), the permutation
and one seed per sample, and the dataset wrapper seeds the RNGs with that sample seed before
transforming the item. What a sample looks like then depends neither on which worker made it,
nor on how many workers there are, nor on whether the workers were restarted by a resume.

The epoch is read from the trainer when the sampler is iterated, not from ``set_epoch``:
Lightning creates the first iterator of a resumed fit (which already prefetches indices with
workers) before it calls ``set_epoch`` (pytorch_lightning/loops/fit_loop.py, ``setup_data``
then ``on_advance_start``).
"""

from __future__ import annotations

import random
from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler, get_worker_info


class EpochSeededSampler(Sampler):
    """Yields ``(index, sample_seed)``: a permutation of ``n`` items (or, with ``base``, the
    indices that sampler yields, e.g. pytorch-metric-learning's MPerClassSampler) and a seed
    per item, both drawn from ``Generator(SeedSequence([seed, epoch_of()]))``."""

    def __init__(self, n: int, seed: int, epoch_of: Callable[[], int], base: Sampler | None = None):
        self.n, self.seed, self.epoch_of, self.base = n, seed, epoch_of, base

    def __len__(self) -> int:
        return len(self.base) if self.base is not None else self.n

    def __iter__(self):
        mixed = int(np.random.SeedSequence([self.seed, int(self.epoch_of())]).generate_state(1)[0])
        generator = torch.Generator().manual_seed(mixed)
        if self.base is None:
            order = torch.randperm(self.n, generator=generator).tolist()
        else:
            order = [int(i) for i in self.base]
        seeds = torch.randint(0, 2**62, (len(order),), generator=generator).tolist()
        return iter(list(zip(order, seeds, strict=True)))


class SeededItems(Dataset):
    """``dataset[index]`` computed under the RNG state ``sample_seed`` for an
    ``(index, sample_seed)`` key. In a worker the RNGs are simply reseeded. In the main process
    (``num_workers=0``) torch's CPU state is restored afterwards (1 us), so the training
    process's own torch stream is the same with or without workers; Python's and NumPy's are
    left as the last sample set them (restoring them measured ~100-200 us a sample; nothing in
    the training step draws from them). Either way a resumed run's states at an epoch boundary
    equal an uninterrupted run's (the checkpoint saves them there)."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        index, seed = key
        if get_worker_info() is not None:
            _seed_all(seed)
            return self.dataset[index]
        state = torch.get_rng_state()
        try:
            _seed_all(seed)
            return self.dataset[index]
        finally:
            torch.set_rng_state(state)


def _seed_all(seed: int) -> None:
    # torchvision's transforms draw from torch's CPU generator; lightly's and user transforms
    # may use Python's random or NumPy's global RNG.
    torch.default_generator.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
