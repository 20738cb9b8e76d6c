"""The order of training rows: seeded batches for any number of (fractional) epochs, optionally length buckets."""

from __future__ import annotations

import math

import numpy as np


def batch_order(n: int, batch_size: int, epochs: float, seed: int,
                lengths: np.ndarray | None = None) -> list[np.ndarray]:
    """Index batches for ``epochs`` passes (a fractional last epoch is a prefix of a new permutation).

    With ``lengths``: shuffled length buckets (as ``group_by_length`` in transformers): each epoch's
    permutation is cut into mega-batches of ``BUCKET_BATCHES`` batches, each sorted by length and cut
    into batches, and the batches of the epoch are shuffled, so a batch holds rows of similar length
    (little padding) while the order stays random. Seeded: the same seed gives the same batches.
    """
    rng = np.random.default_rng(seed)
    total = max(1, math.ceil(epochs * math.ceil(n / batch_size)))
    batches: list[np.ndarray] = []
    while len(batches) < total:
        perm = rng.permutation(n)
        if lengths is None:
            batches.extend(perm[i:i + batch_size] for i in range(0, n, batch_size))
            continue
        epoch = []
        mega = batch_size * BUCKET_BATCHES
        for m in range(0, n, mega):
            chunk = perm[m:m + mega]
            chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
            epoch.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
        batches.extend(epoch[j] for j in rng.permutation(len(epoch)))
    return batches[:total]


BUCKET_BATCHES = 50  # batches per length bucket (transformers' LengthGroupedSampler uses 50 too)
