"""SpikeZIP's signed, bounded IF neuron (ST-BIF), an inference transition: validation, backend choice, and the
call into the op contract.

``stbif(x_seq, q, acc_q, q_threshold, pos_max, neg_min)`` runs T steps: q += x / q_threshold; acc_q is rounded;
a +1 event where q >= 1 and acc_q < pos_max, a -1 event where q < 0 and acc_q > neg_min; acc_q += event, q -= event;
the output is event * q_threshold. It returns (output [T, *], q [*], acc_q [*], the last step's event [*]). The
op is forward-only (``_contract.InferenceOp``, custom ops ``fastspike::stbif_cpp`` / ``fastspike::stbif_triton``):
an input that requires grad raises a RuntimeError. C++ launcher in ``cpu.py`` (csrc/stbif.cpp), Triton kernel in
kernels/stbif.py, oracle and fallback in ops/reference/stbif.py.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch

from .. import _backend, _validate, reference
from .._contract import inference_only
from .autograd import OPS

__all__ = ["stbif"]

_OP = "stbif"


def _param(name: str, value, x_seq: torch.Tensor) -> torch.Tensor:
    """A number or a one-element floating tensor on x_seq's device -> a one-element float32 tensor there."""
    if isinstance(value, torch.Tensor):
        _validate.floating(_OP, name, value)
        if value.numel() != 1:
            raise ValueError(f"{_OP}: {name} must be a number or a one-element tensor, but got shape "
                             f"{tuple(value.shape)}.")
        _validate.same_device(_OP, ("x_seq", x_seq), (name, value))
        return value.detach().reshape(1).to(torch.float32)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{_OP}: {name} must be a finite number or a one-element tensor, but got {value!r}.")
    return torch.tensor([float(value)], dtype=torch.float32, device=x_seq.device)


def stbif(x_seq: torch.Tensor, q: torch.Tensor, acc_q: torch.Tensor, q_threshold, pos_max, neg_min, *,
          backend: Optional[str] = None) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run ST-BIF neurons over x_seq [T, *] (T >= 1) from the states q and acc_q (tensors of shape x_seq.shape[1:]).

    q_threshold, pos_max, neg_min: numbers or one-element tensors. Returns (output [T, *] in x_seq's dtype, q and
    acc_q after the last step in their own dtypes, the last step's event in {-1, 0, 1} in q's dtype). The kernels
    compute in float32 whatever the dtypes (fp16/bf16 are read and written as such), the reference in float32
    (float64 for float64). ``backend``: 'auto' (default: triton for CUDA, cpp for CPU, the reference for float64),
    'torch', 'triton' or 'cpp'. Inference only: with grad mode on, an input that requires grad raises."""
    _validate.tensor(_OP, "x_seq", x_seq)
    _validate.floating(_OP, "x_seq", x_seq)
    if x_seq.ndim < 1 or x_seq.shape[0] == 0:
        raise ValueError(f"{_OP}: x_seq must be a non-empty sequence [T, *] with T >= 1, but got shape "
                         f"{tuple(x_seq.shape)}.")
    for name, t in (("q", q), ("acc_q", acc_q)):
        _validate.tensor(_OP, name, t)
        _validate.floating(_OP, name, t)
        if t.shape != x_seq.shape[1:]:
            raise ValueError(f"{_OP}: {name} must have shape {tuple(x_seq.shape[1:])} (x_seq without T), but got "
                             f"{tuple(t.shape)}. If the batch size changed, call functional.reset_net(net).")
        _validate.same_device(_OP, ("x_seq", x_seq), (name, t))
    params = [_param(n, v, x_seq) for n, v in (("q_threshold", q_threshold), ("pos_max", pos_max),
                                               ("neg_min", neg_min))]
    inference_only(f"{_OP} (SpikeZIP's ST-BIF neuron)",
                   (x_seq, q, acc_q, *(v for v in (q_threshold, pos_max, neg_min) if isinstance(v, torch.Tensor))))
    name = _backend.resolve(backend, (x_seq,), _OP)
    if name == "torch":
        return reference.stbif(x_seq, q, acc_q, *params)
    return OPS[name](x_seq, q, acc_q, *params)
