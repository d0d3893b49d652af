"""Forward/backward hooks that record what layers see and produce (SpikingJelly ``monitor`` names).

Every monitor attaches hooks to the sub-modules of ``net`` that are instances of ``instance`` (default:
the type of ``net`` itself, as in SpikingJelly) and appends one record per call to ``records``. Records
of one layer are reachable by name: ``monitor['layer1.0.sn1']`` is the list of that layer's records,
``monitor[i]`` the i-th record overall, ``monitor.monitored_layers`` the names in registration order.

``FiringRateMonitor`` keeps only running spike counts per layer (no tensors are stored), and
``firing_rate_summary`` turns any ``OutputMonitor`` of spiking layers into per-layer firing rates.

``GPUMonitor`` is a background thread sampling GPU utilisation and memory with ``nvidia-smi`` every
``interval`` seconds (to TensorBoard when ``log_dir`` is given, else to the log); on a machine without
nvidia-smi it logs the error, keeps it in ``error`` and stops with no samples.
"""
from __future__ import annotations

import datetime
import logging
import os
import subprocess
import threading
from typing import Callable, Dict, List, Optional, Tuple, Type, Union

import torch
import torch.nn as nn

__all__ = [
    "BaseMonitor",
    "OutputMonitor",
    "InputMonitor",
    "AttributeMonitor",
    "GradInputMonitor",
    "GradOutputMonitor",
    "FiringRateMonitor",
    "firing_rate_summary",
    "format_firing_rates",
    "GPUMonitor",
]

_log = logging.getLogger(__name__)

InstanceArg = Optional[Union[Type[nn.Module], Tuple[Type[nn.Module], ...]]]


def _identity(x):
    return x


def _single(x):
    """Hooks receive tuples; a one-element tuple is recorded as its element."""
    if isinstance(x, tuple) and len(x) == 1:
        return x[0]
    return x


class BaseMonitor:
    """Bookkeeping shared by all monitors: hooks, layer names and records."""

    def __init__(self) -> None:
        self.hooks: List = []
        self.monitored_layers: List[str] = []
        self.records: List = []
        self.name_records_index: Dict[str, List[int]] = {}
        self._enable = True

    def __getitem__(self, i):
        if isinstance(i, int):
            return self.records[i]
        if isinstance(i, str):
            if i not in self.name_records_index:
                raise KeyError(f"{i!r} is not a monitored layer; monitored layers: {self.monitored_layers}")
            return [self.records[j] for j in self.name_records_index[i]]
        raise TypeError(f"index must be an int (record) or a str (layer name), got {type(i).__name__}")

    def __len__(self) -> int:
        return len(self.records)

    def _select(self, net: nn.Module, instance: InstanceArg):
        if not isinstance(net, nn.Module):
            raise TypeError(f"net must be an nn.Module, got {type(net).__name__}")
        if instance is None:
            instance = type(net)
        chosen = [(name, m) for name, m in net.named_modules() if isinstance(m, instance)]
        for name, _ in chosen:
            self.monitored_layers.append(name)
            self.name_records_index[name] = []
        return chosen

    def _record(self, name: str, value) -> None:
        self.name_records_index[name].append(len(self.records))
        self.records.append(value)

    def clear_recorded_data(self) -> None:
        self.records.clear()
        for idx in self.name_records_index.values():
            idx.clear()

    def enable(self) -> None:
        self._enable = True

    def disable(self) -> None:
        self._enable = False

    def is_enable(self) -> bool:
        return self._enable

    def remove_hooks(self) -> None:
        for h in self.hooks:
            h.remove()
        self.hooks.clear()

    def close(self) -> None:
        """Stop recording and detach every hook (the records stay readable)."""
        self.disable()
        self.remove_hooks()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


class OutputMonitor(BaseMonitor):
    """Records ``function_on_output(output)`` of every matching layer after each forward call."""

    def __init__(self, net: nn.Module, instance: InstanceArg = None, function_on_output: Callable = _identity):
        super().__init__()
        self.function_on_output = function_on_output
        for name, m in self._select(net, instance):
            self.hooks.append(m.register_forward_hook(self.create_hook(name)))

    def create_hook(self, name: str):
        def hook(module, inputs, output):
            if self._enable:
                self._record(name, self.function_on_output(_single(output)))

        return hook


class InputMonitor(BaseMonitor):
    """Records ``function_on_input(input)`` of every matching layer before each forward call."""

    def __init__(self, net: nn.Module, instance: InstanceArg = None, function_on_input: Callable = _identity):
        super().__init__()
        self.function_on_input = function_on_input
        for name, m in self._select(net, instance):
            self.hooks.append(m.register_forward_pre_hook(self.create_hook(name)))

    def create_hook(self, name: str):
        def hook(module, inputs):
            if self._enable:
                self._record(name, self.function_on_input(_single(inputs)))

        return hook


class AttributeMonitor(BaseMonitor):
    """Records ``function_on_attribute(getattr(layer, attribute_name))`` before (``pre_forward=True``)
    or after each forward call, e.g. ``AttributeMonitor('v', False, net, neuron.LIFNode)`` for the
    membrane potential after every step."""

    def __init__(
        self,
        attribute_name: str,
        pre_forward: bool,
        net: nn.Module,
        instance: InstanceArg = None,
        function_on_attribute: Callable = _identity,
    ):
        super().__init__()
        if not isinstance(attribute_name, str):
            raise TypeError(f"attribute_name must be a str, got {type(attribute_name).__name__}")
        self.attribute_name = attribute_name
        self.function_on_attribute = function_on_attribute
        for name, m in self._select(net, instance):
            if pre_forward:
                self.hooks.append(m.register_forward_pre_hook(self.create_hook(name)))
            else:
                self.hooks.append(m.register_forward_hook(self.create_hook(name)))

    def create_hook(self, name: str):
        def hook(module, *args):
            if self._enable:
                self._record(name, self.function_on_attribute(getattr(module, self.attribute_name)))

        return hook


class GradInputMonitor(BaseMonitor):
    """Records ``function_on_grad_input(grad_input)`` (gradient w.r.t. the layer's input) during backward."""

    def __init__(self, net: nn.Module, instance: InstanceArg = None, function_on_grad_input: Callable = _identity):
        super().__init__()
        self.function_on_grad_input = function_on_grad_input
        for name, m in self._select(net, instance):
            self.hooks.append(m.register_full_backward_hook(self.create_hook(name)))

    def create_hook(self, name: str):
        def hook(module, grad_input, grad_output):
            if self._enable:
                self._record(name, self.function_on_grad_input(_single(grad_input)))

        return hook


class GradOutputMonitor(BaseMonitor):
    """Records ``function_on_grad_output(grad_output)`` (gradient w.r.t. the layer's output) during backward."""

    def __init__(self, net: nn.Module, instance: InstanceArg = None, function_on_grad_output: Callable = _identity):
        super().__init__()
        self.function_on_grad_output = function_on_grad_output
        for name, m in self._select(net, instance):
            self.hooks.append(m.register_full_backward_hook(self.create_hook(name)))

    def create_hook(self, name: str):
        def hook(module, grad_input, grad_output):
            if self._enable:
                self._record(name, self.function_on_grad_output(_single(grad_output)))

        return hook


def _default_spiking_types():
    from . import neuron

    base = getattr(neuron, "BaseNode", None)
    if base is None:
        raise RuntimeError("fastspike.neuron.BaseNode is not available; pass instance= explicitly")
    return base


class FiringRateMonitor(BaseMonitor):
    """Per-layer firing rates without storing tensors.

    Counts the non-zero outputs (spikes) and the output elements of every matching layer (default: every
    spiking neuron, ``fastspike.neuron.BaseNode``) over all forward calls since the last
    ``clear_recorded_data()``. ``summary()`` returns ``{layer name: spikes / elements}`` in registration
    order; ``str(monitor)`` formats it as a table.
    """

    def __init__(self, net: nn.Module, instance: InstanceArg = None):
        super().__init__()
        if instance is None:
            instance = _default_spiking_types()
        self.spikes: Dict[str, int] = {}
        self.elements: Dict[str, int] = {}
        for name, m in self._select(net, instance):
            self.spikes[name] = 0
            self.elements[name] = 0
            self.hooks.append(m.register_forward_hook(self.create_hook(name)))

    def create_hook(self, name: str):
        def hook(module, inputs, output):
            if self._enable:
                out = _single(output)
                if isinstance(out, torch.Tensor):
                    self.spikes[name] += int(torch.count_nonzero(out.detach()))
                    self.elements[name] += out.numel()

        return hook

    def clear_recorded_data(self) -> None:
        super().clear_recorded_data()
        for k in self.spikes:
            self.spikes[k] = 0
            self.elements[k] = 0

    def summary(self) -> Dict[str, float]:
        return {k: (self.spikes[k] / self.elements[k] if self.elements[k] else float("nan")) for k in self.spikes}

    def overall(self) -> float:
        """Spikes over elements summed across all monitored layers."""
        e = sum(self.elements.values())
        return sum(self.spikes.values()) / e if e else float("nan")

    def __str__(self) -> str:
        return format_firing_rates(self.summary())


def firing_rate_summary(monitor: BaseMonitor) -> Dict[str, float]:
    """Mean firing rate per layer from a monitor whose records are spike tensors (e.g. an
    ``OutputMonitor`` on the neurons): non-zero elements over all elements, over all recorded calls."""
    rates = {}
    for name in monitor.monitored_layers:
        recs = [r for r in monitor[name] if isinstance(r, torch.Tensor)]
        total = sum(r.numel() for r in recs)
        rates[name] = sum(int(torch.count_nonzero(r.detach())) for r in recs) / total if total else float("nan")
    return rates


def format_firing_rates(rates: Dict[str, float]) -> str:
    """A plain-text table ``layer | firing rate``."""
    if not rates:
        return "(no monitored layers)"
    width = max(len("layer"), max(len(k) for k in rates))
    lines = [f"{'layer':<{width}}  firing rate", f"{'-' * width}  -----------"]
    lines += [f"{k:<{width}}  {v:.4f}" for k, v in rates.items()]
    return "\n".join(lines)


class GPUMonitor(threading.Thread):
    """Sample GPU utilisation (%) and memory used (MiB) of ``gpu_ids`` every ``interval`` seconds in a daemon-less
    background thread (``stop()`` ends it), as SpikingJelly's does: to TensorBoard scalars ``utilization_<id>``
    / ``memory_used_<id>`` under ``<log_dir>/gpu_monitor`` when ``log_dir`` is given, else to the log at INFO.
    Every sample is also kept in ``samples`` as (step, gpu index, utilization, memory_used). A failing
    ``nvidia-smi`` (absent, an error, malformed output) is logged, kept in ``error``, and stops the thread."""

    def __init__(self, log_dir: Optional[str] = None, gpu_ids: Tuple[int, ...] = (0,), interval: float = 600.0,
                 start_now: bool = True) -> None:
        super().__init__()
        if not gpu_ids:
            raise ValueError(f"GPUMonitor: gpu_ids must name at least one GPU, but got {gpu_ids!r}.")
        if not interval > 0:
            raise ValueError(f"GPUMonitor: interval must be a positive number of seconds, but got {interval!r}.")
        self.log_dir = log_dir
        self.gpu_ids = gpu_ids
        self.interval = interval
        self._stop_event = threading.Event()
        self.command = ["nvidia-smi", "--query-gpu=index,utilization.gpu,memory.used", "--format=csv,noheader,nounits",
                        "-i", ",".join(map(str, gpu_ids))]
        self.step = 0
        self.writer = None
        self.samples: List[Tuple[int, str, int, int]] = []
        self.error: Optional[str] = None
        if start_now:
            self.start()

    def stop(self) -> None:
        """Ask the thread to finish (it does within its current wait); ``join()`` waits for it."""
        self._stop_event.set()

    def _fail(self, why: str) -> None:
        self.error = why
        _log.error("GPU monitor stopped: %s", why)

    def _sample(self) -> Optional[List[Tuple[str, int, int]]]:
        try:
            done = subprocess.run(self.command, check=False, capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.TimeoutExpired) as e:
            self._fail(f"{type(e).__name__}: {e}")
            return None
        if done.returncode:
            self._fail(done.stderr.strip() or f"nvidia-smi exited with code {done.returncode}")
            return None
        out = done.stdout.strip()
        if not out:
            self._fail("nvidia-smi returned no data")
            return None
        try:
            rows = []
            for line in out.splitlines():
                index, util, mem = (v.strip() for v in line.split(","))
                rows.append((index, int(util), int(mem)))
        except ValueError:
            self._fail(f"malformed nvidia-smi output: {out!r}")
            return None
        return rows

    def run(self) -> None:
        if self._stop_event.is_set():
            return
        try:
            if self.log_dir is not None:
                from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

                self.writer = SummaryWriter(os.path.join(self.log_dir, "gpu_monitor"))
            while not self._stop_event.is_set():
                rows = self._sample()
                if rows is None:
                    return
                for index, util, mem in rows:
                    self.samples.append((self.step, index, util, mem))
                    if self.writer is not None:
                        self.writer.add_scalar(f"utilization_{index}", util, self.step)
                        self.writer.add_scalar(f"memory_used_{index}", mem, self.step)
                if self.writer is None:
                    _log.info("GPU monitor sample at %s: %s", datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S"),
                              rows)
                self.step += 1
                if self._stop_event.wait(self.interval):
                    return
        finally:
            if self.writer is not None:
                self.writer.close()
