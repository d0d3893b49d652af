"""Reference of ``stbif``: SpikeZIP's signed, bounded IF neuron (inference only) as a plain loop over time."""
from __future__ import annotations

from typing import Tuple

import torch

__all__ = ["stbif"]


def _scalar(value, dtype, device) -> torch.Tensor:
    t = value if isinstance(value, torch.Tensor) else torch.tensor(float(value))
    return t.detach().reshape(()).to(device=device, dtype=dtype)


def stbif(x_seq: torch.Tensor, q: torch.Tensor, acc_q: torch.Tensor, q_threshold, pos_max,
          neg_min) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per step: q += x / q_threshold; acc_q = round(acc_q); a +1 event where q >= 1 and acc_q < pos_max, a -1
    event where q < 0 and acc_q > neg_min; acc_q += event; q -= event; output event * q_threshold.

    Computes in float32 (float64 for float64 input). Returns (output [T, *] in x_seq's dtype, q and acc_q after
    the last step in their own dtypes, the last step's event in q's dtype)."""
    ct = torch.promote_types(x_seq.dtype, torch.float32)
    thr, hi, lo = (_scalar(v, ct, x_seq.device) for v in (q_threshold, pos_max, neg_min))
    qf, acc = q.to(ct), acc_q.to(ct)
    event = torch.zeros_like(qf)
    outs = []
    for x in x_seq.unbind(0):
        qf = qf + x.to(ct) / thr
        acc = acc.round()
        up = ((qf >= 1) & (acc < hi)).to(ct)
        down = ((qf < 0) & (acc > lo)).to(ct)
        event = up - down
        acc = acc + event
        qf = qf - up + down
        outs.append((event * thr).to(x_seq.dtype))
    return torch.stack(outs), qf.to(q.dtype), acc.to(acc_q.dtype), event.to(q.dtype)
