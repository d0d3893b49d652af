"""The quantized chip description produced by :func:`to_speck`: per-core JSON (written atomically) and its
reader."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from .._util import atomic_write
from .build import SpeckCore, check_speck

__all__ = ["SpeckConfig", "to_speck", "load_config"]


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
        from .simulator import simulate

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
