"""The quantized chip description produced by :func:`to_speck`: per-core JSON (written atomically), its reader,
and a bit-accurate, time-stepped integer IAF simulation of it (rules in ``fastspike.export.speck``)."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._util import atomic_write
from .build import SpeckCore, check_speck

__all__ = ["SpeckConfig", "to_speck", "load_config", "simulate"]


@dataclass
class SpeckConfig:
    """The quantized chip description produced by :func:`to_speck`."""

    input_shape: Tuple[int, ...]
    cores: List[SpeckCore]
    assignment: List[int]

    def to_dict(self) -> dict:
        out = {"chip": "speck/dynapcnn", "input_shape": list(self.input_shape), "cores": []}
        for i, c in enumerate(self.cores):
            f, ch, kh, kw = c.weight_q.shape
            out["cores"].append({
                "layer": i,
                "chip_core": self.assignment[i],
                "name": c.name,
                "neuron": c.neuron,
                "input_shape": {"channels": c.in_shape[0] * 1, "height": c.in_shape[1], "width": c.in_shape[2]},
                "output_shape": {"channels": c.neuron_shape[0], "height": c.neuron_shape[1],
                                 "width": c.neuron_shape[2]},
                "kernel_size": kh,
                "stride": {"y": c.stride[0], "x": c.stride[1]},
                "padding": {"y": c.padding[0], "x": c.padding[1]},
                "weights": c.weight_q.tolist(),
                "biases": c.bias_q.tolist() if c.bias_q is not None else [0] * f,
                "leak_enable": bool(c.bias_q is not None and bool(c.bias_q.any())),
                "threshold_high": c.threshold_q,
                "threshold_low": -(2 ** 15),
                "return_to_zero": c.reset == "zero",
                "sources": [{"layer": s if s >= 0 else "input", "pooling": p} for s, p in c.sources],
                "destinations": [{"layer": d, "chip_core": self.assignment[d] if d is not None else None,
                                  "pooling": p, "enable": True} for d, p in c.destinations],
                "kernel_memory": c.kernel_memory,
                "neuron_memory": c.neuron_memory,
                "scale": c.scale,
            })
        return out

    def to_json(self, path: Optional[Union[str, os.PathLike]] = None) -> str:
        text = json.dumps(self.to_dict(), indent=1)
        if path is not None:
            def write(tmp):
                with open(tmp, "w") as fh:
                    fh.write(text)

            atomic_write(path, write)
        return text

    def simulate(self, spikes: torch.Tensor, return_all: bool = False):
        return simulate(self, spikes, return_all=return_all)


def to_speck(model: nn.Module, input_shape: Sequence[int], convert_lif: bool = True, fold_bn: bool = True,
             quantized: bool = False, path: Optional[Union[str, os.PathLike]] = None) -> SpeckConfig:
    """Convert ``model`` to a Speck chip configuration: BatchNorm folding, LIF -> IAF (rule in the module
    docstring), quantization to 8-bit weights/bias and 16-bit thresholds, one JSON entry per core (written to
    ``path`` when given). Raises ValueError listing every violated constraint when the model does not fit."""
    report = check_speck(model, input_shape, convert_lif=convert_lif, fold_bn=fold_bn, quantized=quantized)
    if not report.ok:
        raise ValueError(str(report))
    cfg = SpeckConfig(tuple(int(v) for v in input_shape), report.cores, report.assignment)
    if path is not None:
        cfg.to_json(path)
    return cfg


def load_config(obj) -> SpeckConfig:
    d = json.loads(obj) if isinstance(obj, str) and obj.lstrip().startswith("{") else None
    if d is None:
        with open(obj) as fh:
            d = json.load(fh)
    cores = []
    for c in d["cores"]:
        w = torch.tensor(c["weights"], dtype=torch.int64)
        core = SpeckCore(c["name"], c["neuron"], (c["input_shape"]["channels"], c["input_shape"]["height"],
                                                  c["input_shape"]["width"]), w.double(), None,
                         (c["stride"]["y"], c["stride"]["x"]), (c["padding"]["y"], c["padding"]["x"]), (1, 1), 1,
                         float(c["threshold_high"]), "zero" if c["return_to_zero"] else "subtract",
                         (c["output_shape"]["channels"], c["output_shape"]["height"], c["output_shape"]["width"]))
        core.weight_q = w
        core.bias_q = torch.tensor(c["biases"], dtype=torch.int64)
        core.threshold_q = int(c["threshold_high"])
        core.sources = [(-1 if s["layer"] == "input" else int(s["layer"]), int(s["pooling"])) for s in c["sources"]]
        core.destinations = [(x["layer"], int(x["pooling"])) for x in c["destinations"]]
        core.scale = float(c.get("scale", 1.0))
        cores.append(core)
    return SpeckConfig(tuple(d["input_shape"]), cores, [c["chip_core"] for c in d["cores"]])


# ---- bit-accurate, time-stepped integer IAF simulation of a configuration
def _sum_pool(x: torch.Tensor, p: int) -> torch.Tensor:
    if p == 1:
        return x
    n, c, h, w = x.shape
    return x[:, :, : h // p * p, : w // p * p].reshape(n, c, h // p, p, w // p, p).sum(dim=(3, 5))


def simulate(config: Union[SpeckConfig, str, os.PathLike], spikes: torch.Tensor, return_all: bool = False):
    """Time-stepped integer IAF simulation of a Speck configuration (module docstring).

    spikes: input events per step [T, N, C, H, W] (non-negative integer counts). Returns the output core's
    spikes [T, N, f, h, w] (and every core's spikes with return_all=True). Exactly reproducible: integer
    arithmetic only (convolutions run in float64 on integers below 2**53, which is exact)."""
    cfg = config if isinstance(config, SpeckConfig) else load_config(os.fspath(config))
    if isinstance(spikes, torch.Tensor) and spikes.dim() == 3:
        spikes = spikes.reshape(*spikes.shape, 1, 1)  # dense models: [T, N, F] -> [T, N, F, 1, 1]
    if not isinstance(spikes, torch.Tensor) or spikes.dim() != 5:
        raise ValueError("simulate: spikes must be a tensor [T, N, C, H, W] (or [T, N, F] for dense models).")
    expected = tuple(cfg.input_shape) if len(cfg.input_shape) == 3 else (cfg.input_shape[0], 1, 1)
    if tuple(spikes.shape[2:]) != expected:
        raise ValueError(f"simulate: spikes have per-sample shape {tuple(spikes.shape[2:])}, the configuration "
                         f"expects {tuple(cfg.input_shape)}.")
    if bool((spikes < 0).any()) or not bool((spikes == spikes.round()).all()):
        raise ValueError("simulate: spikes must be non-negative integer event counts.")
    T, N = spikes.shape[:2]
    v = [None] * len(cfg.cores)
    outs = [[] for _ in cfg.cores]
    out_idx = [i for i, c in enumerate(cfg.cores) if any(d is None for d, _ in c.destinations)]
    with torch.no_grad():
        for t in range(T):
            x_in = spikes[t].to(torch.int64)
            cur = [None] * len(cfg.cores)
            for i, c in enumerate(cfg.cores):
                total = None
                for src, p in c.sources:
                    s = x_in if src < 0 else cur[src]
                    s = _sum_pool(s, p)
                    if s.shape[1:] != c.in_shape:
                        s = s.reshape(s.shape[0], *c.in_shape)
                    total = s if total is None else total + s
                a = F.conv2d(total.double(), c.weight_q.double(), None, c.stride, c.padding).round().to(torch.int64)
                if c.bias_q is not None:
                    a = a + c.bias_q.view(1, -1, 1, 1)
                vi = a if v[i] is None else v[i] + a
                vi = vi.clamp(-(2 ** 15), 2 ** 15 - 1)
                spk = vi >= c.threshold_q
                if c.reset == "zero":
                    vi = torch.where(spk, torch.zeros_like(vi), vi)
                else:
                    vi = vi - spk.to(torch.int64) * c.threshold_q
                vi = vi.clamp(min=-(2 ** 15))
                v[i] = vi
                cur[i] = spk.to(torch.int64)
                outs[i].append(cur[i])
    all_spikes = [torch.stack(o).to(torch.float32) for o in outs]
    last = all_spikes[out_idx[-1] if out_idx else -1]
    return (last, all_spikes) if return_all else last
