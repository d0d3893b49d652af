"""SpikingJelly's ``spikingjelly.datasets.transform``: random deletion of time steps."""
from __future__ import annotations

from typing import Union

import numpy as np
import torch

__all__ = ["random_temporal_delete", "RandomTemporalDelete"]


def random_temporal_delete(x_seq: Union[torch.Tensor, np.ndarray], T_remain: int, batch_first: bool):
    """Keep ``T_remain`` randomly chosen time steps, in order (numpy's global generator, as SpikingJelly)."""
    T = x_seq.shape[1] if batch_first else x_seq.shape[0]
    if not 0 <= int(T_remain) <= T:
        raise ValueError(f"T_remain must lie in [0, {T}] (the sequence length), got {T_remain!r}")
    keep = np.random.choice(T, T_remain, replace=False)
    keep.sort()
    return x_seq[:, keep] if batch_first else x_seq[keep]


class RandomTemporalDelete(torch.nn.Module):
    def __init__(self, T_remain: int, batch_first: bool):
        super().__init__()
        self.T_remain = T_remain
        self.batch_first = batch_first

    def forward(self, x_seq: Union[torch.Tensor, np.ndarray]) -> Union[torch.Tensor, np.ndarray]:
        return random_temporal_delete(x_seq, self.T_remain, self.batch_first)
