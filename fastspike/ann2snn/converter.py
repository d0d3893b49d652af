"""ANN-to-SNN conversion by torch.fx graph rewriting: fastspike's :class:`ReLUConverter`, :func:`simulate`, and
SpikingJelly 2.0's :class:`Converter` (its recipe executor, an :class:`FXConverter`).

The steps live in ``trace.py`` (1), ``support.py`` (2), ``passes.py`` (3, 5, 6); this file calibrates (4) and
orchestrates. Pipeline of :class:`ReLUConverter` (``snn = ReLUConverter(...)(ann)``):

1. copy the ANN, put it in eval mode and trace it with torch.fx (failures, e.g. data-dependent control flow,
   become a :class:`ConversionError` that names the offending source line);
2. check every graph node against the supported set and report *all* unsupported ones at once, each with
   its graph node name, module path and source line;
3. remove dropout, fold each BatchNorm into the conv/linear that feeds it (a BatchNorm with nothing to fold
   into becomes a fixed per-channel affine map);
4. find every ReLU site (``nn.ReLU`` modules, ``F.relu``/``F.relu_``/``torch.relu``/``torch.relu_`` calls,
   ``x.relu()``/``x.relu_()``) and every QCFS module; measure the activation statistic lambda of each ReLU
   site on the calibration data (unless the user passed it);
5. replace each site with ``Sequential(IFNode(v_threshold=lambda, v_reset=None), VoltageScaler(lambda))``:
   the neuron integrates the ANN's pre-activation unchanged, fires when it reaches lambda and soft-resets by
   lambda, and each spike leaves as the value lambda, so the firing rate times lambda approximates
   ``clamp(relu(x), 0, lambda)``. Weights are never rescaled (the threshold carries lambda), which keeps
   residual additions and concatenations of branches with different lambdas correct without balancing;
6. replace max pooling by :class:`~fastspike.ann2snn.modules.SpikeMaxPool` (gated by accumulated input).

The result is a ``torch.fx.GraphModule`` that runs one time step per call (step_mode 's'), holding fastspike
``IFNode`` neurons (any backend, ``functional.reset_net`` resets it). Feed the same input at every step (direct
encoding) and average the outputs over T steps to approximate the ANN's output; :func:`simulate` does that.
"""
from __future__ import annotations

import copy
import math
import warnings
from typing import Dict, Iterable, List, Optional, Union

import torch
import torch.fx as fx
import torch.nn as nn

from fastspike import functional, neuron
from .modules import StatisticObserver, VoltageScaler
from .passes import Site, fold_batchnorm_pass, fold_output_scale, fuse_batchnorm, place_sites, remove_dropout, \
    replace_maxpool, set_module
from .fx_converter import FXConverter, ModuleConverter
from .recipes.base import FXConversionRecipe, ModuleConversionRecipe
from .support import check_supported
from .trace import ConversionError, trace_ann

__all__ = ["Converter", "ReLUConverter", "FXConverter", "ModuleConverter", "ConversionError", "simulate",
           "fuse_batchnorm"]


def _parse_mode(mode) -> Union[str, float]:
    if isinstance(mode, str):
        m = mode.strip().lower()
        if m in ("max", "qcfs"):
            return m
        if m.endswith("%"):
            try:
                q = float(m[:-1])
            except ValueError:
                q = float("nan")
            if 0.0 < q <= 100.0:
                return f"{q}%"
        raise ValueError(f"mode must be 'max', 'qcfs', a percentile string such as '99.9%' or a float in (0, 1], "
                         f"but got {mode!r}.")
    if isinstance(mode, (int, float)) and not isinstance(mode, bool) and 0.0 < float(mode) <= 1.0:
        return float(mode)
    raise ValueError(f"mode must be 'max', 'qcfs', a percentile string such as '99.9%' or a float in (0, 1], "
                     f"but got {mode!r}.")


def _first_tensor(batch):
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], torch.Tensor):
        return batch[0]
    if isinstance(batch, dict):
        for value in batch.values():
            if isinstance(value, torch.Tensor):
                return value
    raise ConversionError(f"the calibration dataloader must yield tensors or (input, target) pairs, "
                          f"but a batch was a {type(batch).__name__}.")


class ReLUConverter:
    """Convert a ReLU (or QCFS) ANN into a rate-coded SNN of soft-reset IF neurons.

    fastspike's own converter: ``ReLUConverter(dataloader, mode, ...)(ann)``. (``Converter`` is SpikingJelly 2.0's
    recipe executor; calls in this class's form, ``Converter(dataloader=..., mode=...)``, still build one of these.)

    :param dataloader: calibration data (batches of inputs or (input, target) pairs), used for ReLU sites whose
        statistic is not in ``stats``. Not needed in 'qcfs' mode when every activation is a QCFS, nor when
        ``stats`` covers every ReLU site.
    :param mode: statistic lambda of each ReLU's output: ``'max'`` (maximum over the calibration set),
        ``'P%'`` such as ``'99.9%'`` (the P-th percentile of each batch, averaged over batches), a float
        ``r`` in (0, 1] (``r`` times the maximum, as in SpikingJelly), or ``'qcfs'`` (thresholds are the trained
        QCFS clip values; plain ReLU sites, if any, use the maximum).
    :param stats: ``{site: lambda}`` given by the user; a site is named by its module path (``'features.2'``)
        for an ``nn.ReLU`` called once, otherwise by its torch.fx node name (``'relu_1'``; the node name also
        works for modules). :meth:`collect_stats` returns such a dict.
    :param device: device for calibration batches (default: the ANN's parameter device).
    :param v_init: initial membrane potential as a fraction of the threshold. ``None`` means 0.5 in 'qcfs' mode
        (Bu et al.) and 0 otherwise (SpikingJelly's 'max' conversion); 0.5 usually also helps 'max' mode.
    :param fuse_flag: fold BatchNorm into the preceding conv/linear (otherwise each BatchNorm becomes a fixed
        per-channel affine map).
    :param max_batches: use at most this many calibration batches.
    :param fold_scale: fold each neuron's output scale lambda into the weights of the conv/linear layers it feeds
        (through flatten, reshapes, average and max pooling), leaving a bare ``IFNode`` that emits 0/1 spikes.
        Sites whose output reaches an addition, a concatenation or the network output keep their
        ``VoltageScaler``. The function computed is the same; bare neurons are what exporters (NIR) expect.
    :param momentum: ``None`` (default) combines the per-batch statistics as described under ``mode``; a float
        m in (0, 1] uses SpikingJelly's running estimate ``s <- (1 - m) s + m s_batch`` instead.
    """

    def __init__(self, dataloader: Optional[Iterable] = None, mode="max", stats: Optional[Dict[str, float]] = None,
                 device=None, v_init: Optional[float] = None, fuse_flag: bool = True,
                 max_batches: Optional[int] = None, fold_scale: bool = False, momentum: Optional[float] = None):
        self.mode = _parse_mode(mode)
        if stats is not None and not isinstance(stats, dict):
            raise TypeError(f"stats must be a dict {{site name: lambda}}, but got {type(stats).__name__}.")
        for key, value in (stats or {}).items():
            v = float(value)
            if not (math.isfinite(v) and v > 0.0):
                raise ValueError(f"stats[{key!r}] must be a finite positive number, but got {value!r}.")
        if v_init is not None and not 0.0 <= float(v_init) < 1.0:
            raise ValueError(f"v_init is a fraction of the threshold in [0, 1), but got {v_init!r}.")
        if max_batches is not None and int(max_batches) < 1:
            raise ValueError(f"max_batches must be >= 1, but got {max_batches!r}.")
        self.dataloader = dataloader
        self.stats = dict(stats or {})
        self.device = device
        self.v_init = v_init
        self.fuse_flag = fuse_flag
        self.max_batches = max_batches
        self.fold_scale = bool(fold_scale)
        if momentum is not None and not 0.0 < float(momentum) <= 1.0:
            raise ValueError(f"momentum must be in (0, 1] or None, but got {momentum!r}.")
        self.momentum = None if momentum is None else float(momentum)
        self.thresholds: Dict[str, float] = {}  # filled by the last conversion: site -> IF threshold

    # -- statistics -------------------------------------------------------------------------------
    def _prepare(self, ann: nn.Module):
        if not isinstance(ann, nn.Module):
            raise TypeError(f"ReLUConverter expects an nn.Module, but got {type(ann).__name__}.")
        gm = trace_ann(copy.deepcopy(ann).eval())
        check_supported(gm)
        remove_dropout(gm)
        fold_batchnorm_pass(gm, self.fuse_flag)
        return gm

    def _calibrate(self, gm: fx.GraphModule, sites: List[Site], needed: List[Site]) -> Dict[str, float]:
        if not needed:
            return {}
        if self.dataloader is None:
            names = ", ".join(repr(s.key) for s in needed)
            raise ConversionError(
                f"ann2snn needs an activation statistic for ReLU site(s) {names} but got no dataloader: pass "
                f"ReLUConverter(dataloader=...) or ReLUConverter(stats={{name: value}}) covering them "
                f"(ReLUConverter().sites(ann) lists every site).")
        mode = "max" if self.mode == "qcfs" else self.mode
        observers = {}
        for s in needed:
            obs = gm.get_submodule(s.module_path)
            obs.mode = mode
            observers[s.key] = obs
        gm.recompile()
        device = self.device
        if device is None:
            p = next(gm.parameters(), None)
            device = p.device if p is not None else torch.device("cpu")
        seen = 0
        with torch.no_grad():
            for i, batch in enumerate(self.dataloader):
                if self.max_batches is not None and i >= self.max_batches:
                    break
                gm(_first_tensor(batch).to(device))
                seen += 1
        if seen == 0:
            raise ConversionError("the calibration dataloader yielded no batches.")
        out = {}
        for key, obs in observers.items():
            value = obs.result(self.momentum)
            if value is None:
                raise ConversionError(f"ReLU site {key!r} was never reached while calibrating.")
            out[key] = value
        return out

    def _lookup(self, site: Site) -> Optional[float]:
        for key in (site.key, site.node_name, site.module_path):
            if key in self.stats:
                return float(self.stats[key])
        return None

    def _site_graph(self, ann: nn.Module):
        gm = self._prepare(ann)
        sites = place_sites(gm, lambda q, clip: StatisticObserver(self.mode, clip) if q is None else q)
        return gm, sites

    def sites(self, ann: nn.Module) -> List[str]:
        """Names of the ReLU/QCFS sites of ``ann``, in graph order (the keys that ``stats`` uses)."""
        return [s.key for s in self._site_graph(ann)[1]]

    def collect_stats(self, ann: nn.Module) -> Dict[str, float]:
        """Measure lambda of every plain ReLU site on the dataloader (ignores ``stats``); reusable as ``stats``."""
        gm, sites = self._site_graph(ann)
        return self._calibrate(gm, sites, [s for s in sites if s.qcfs is None])

    # -- conversion -------------------------------------------------------------------------------
    def __call__(self, ann: nn.Module) -> fx.GraphModule:
        gm, sites = self._site_graph(ann)
        needed = [s for s in sites if s.qcfs is None and self._lookup(s) is None]
        measured = self._calibrate(gm, sites, needed)
        self.thresholds = {}
        for s in sites:
            if s.qcfs is not None:
                lam = float(s.qcfs.threshold.detach().abs())
                frac = s.qcfs.phi if self.v_init is None else float(self.v_init)
            else:
                lam = measured[s.key] if s.key in measured else self._lookup(s)
                if s.clip is not None:
                    lam = min(lam, s.clip)  # the IF neuron saturates at one spike per step: the clip
                frac = (0.5 if self.mode == "qcfs" else 0.0) if self.v_init is None else float(self.v_init)
            if not lam > 0.0 or not math.isfinite(lam):
                warnings.warn(f"ann2snn: site {s.key!r} has activation statistic {lam}; using threshold 1.0 "
                              f"(the ANN never activates it on the calibration data).")
                lam = 1.0
            self.thresholds[s.key] = lam
            set_module(gm, s.module_path, _scaled_if(lam, frac))
        replace_maxpool(gm)
        if self.fold_scale:
            for s in sites:
                fold_output_scale(gm, s.module_path, self.thresholds[s.key])
        gm.graph.lint()
        gm.recompile()
        gm.delete_all_unused_submodules()
        return gm


def _is_recipe_call(args, kwargs) -> bool:
    """SpikingJelly's ``Converter(recipe, device=None)``: a recipe (object or name) first, or ``recipe=``."""
    first = kwargs.get("recipe", args[0] if args else None)
    return "recipe" in kwargs or isinstance(first, (str, FXConversionRecipe, ModuleConversionRecipe))


class _ReLUConverterCalls:
    """Routes calls in :class:`ReLUConverter`'s form (no recipe: a dataloader first, or only its keywords) to it,
    so code written for fastspike's converter under the name ``Converter`` keeps working."""

    def __new__(cls, *args, **kwargs):
        # no arguments at all: copy/pickle re-creating an instance (Converter() itself then needs its recipe)
        if (args or kwargs) and not _is_recipe_call(args, kwargs):
            return ReLUConverter(*args, **kwargs)
        return super().__new__(cls)


class Converter(_ReLUConverterCalls, FXConverter):
    """SpikingJelly 2.0's ``Converter``: the FX recipe executor (SpikingJelly's ``Converter`` is its
    ``FXConverter``). ``Converter(recipe, device=None).convert(ann)`` runs an FX recipe such as
    ``RateCodingRecipe(dataloader=...)`` on a copy of ``ann``.

    A call without a recipe (``Converter(dataloader=loader, mode="max")``, ``Converter(loader)``,
    ``Converter(stats=...)``) builds fastspike's :class:`ReLUConverter` instead.
    """

    def __init__(self, recipe: Union[str, FXConversionRecipe], device: Optional[Union[torch.device, str]] = None):
        super().__init__(recipe, device)


def _scaled_if(threshold: float, v_init_fraction: float) -> nn.Sequential:
    node = neuron.IFNode(v_threshold=threshold, v_reset=None, step_mode="s")
    if v_init_fraction:
        v0 = v_init_fraction * threshold
        node.set_reset_value("v", v0)
        node.v = v0
    return nn.Sequential(node, VoltageScaler(threshold))


def simulate(snn: nn.Module, x: torch.Tensor, T: int, return_all: bool = False):
    """Reset ``snn``, feed ``x`` for T steps and return the mean output (or, with return_all, the running means
    after every step as a [T, ...] tensor). The converted SNN's mean output approximates the ANN's output."""
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ValueError(f"T must be a positive int, but got {T!r}.")
    functional.reset_net(snn)
    total = None
    means = []
    with torch.no_grad():
        for t in range(T):
            y = snn(x)
            total = y.clone() if total is None else total + y
            if return_all:
                means.append(total / (t + 1))
    functional.reset_net(snn)
    return torch.stack(means) if return_all else total / T
