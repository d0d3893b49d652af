"""Delayed readout for converted SNNs (SpikingJelly 2.0's ``estimate_delay_start``).

A converted neuron needs some steps to charge from its initial potential to its first spike, and each layer
adds its own such delay, so the first outputs of a deep SNN are wrong. Averaging the output only from step
``delay_start`` on skips them. The estimate looks at every ``scaler -> neuron -> scaler`` path of a converted
graph (VoltageScaler or ChannelVoltageScaler on both sides) and runs the network once per probe batch with each
neuron replaced by ``clamp(input, 0, v_threshold)`` (its rate approximation). Per neuron it takes

    delay = mean over elements of max(v_threshold - v_init, 0) * s / v_threshold
            / mean over elements of relu(input) * s / v_threshold

(``s`` the output scale; with channel-wise scales each mean is taken per channel and the largest channel mean of
numerator and of denominator is used),
averages it over the probe batches and sums it over the neurons. The result is rounded up and clamped so that at
least 4 readout steps remain.
"""
from __future__ import annotations

import math
import warnings
from itertools import islice
from typing import Dict, Iterable, List, Tuple, Union

import torch
import torch.fx as fx
import torch.nn as nn

from fastspike import functional
from fastspike.neuron import BaseNode
from .modules import ChannelVoltageScaler, VoltageScaler

__all__ = ["estimate_delay_start", "Scaler"]

Scaler = Union[VoltageScaler, ChannelVoltageScaler]
_MIN_READOUT_STEPS = 4


def _batch_input(batch) -> torch.Tensor:
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], torch.Tensor):
        return batch[0]
    raise TypeError(f"estimate_delay_start: the dataloader must yield tensors or (input, ...) sequences, but a batch "
                    f"was a {type(batch).__name__}.")


def _delay_ratio(node: BaseNode, scaler: Scaler, x: torch.Tensor) -> float:
    thr = torch.as_tensor(node.v_threshold, device=x.device, dtype=x.dtype)
    if thr.numel() != 1 or not bool(torch.isfinite(thr).all()) or not bool((thr > 0).all()):
        raise ValueError(f"estimate_delay_start needs neurons with one finite positive v_threshold, but got "
                         f"{node.v_threshold!r}.")
    if hasattr(node, "get_reset_value"):
        v0 = node.get_reset_value("v")
    else:
        v0 = getattr(node, "_memories_rv", {}).get("v", 0.0)
    v0 = torch.as_tensor(0.0 if v0 is None else v0, device=x.device, dtype=x.dtype)
    if isinstance(scaler, ChannelVoltageScaler):
        scale, dim = scaler._view_scale(x).to(device=x.device, dtype=x.dtype), scaler.channel_dim
    else:
        scale, dim = scaler.scale.to(device=x.device, dtype=x.dtype), None
    activation = torch.clamp(x.detach(), min=0) * scale / thr
    charge = torch.clamp(thr - v0, min=0) * scale / thr
    if dim is None or scale.dim() == 0:
        mean_activation, mean_charge = activation.mean(), charge.mean()
    else:
        d = dim + activation.dim() if dim < 0 else dim
        if not 0 <= d < activation.dim():
            raise ValueError(f"estimate_delay_start: channel_dim={dim} is out of range for shape {tuple(x.shape)}.")
        others = tuple(i for i in range(activation.dim()) if i != d)
        mean_activation = activation.mean(dim=others).max()
        mean_charge = charge.expand_as(activation).mean(dim=others).max()
    if mean_activation <= 0:
        return 0.0
    return float(mean_charge / mean_activation)


def _paths(model: nn.Module) -> List[Tuple[BaseNode, Scaler]]:
    if not isinstance(model, fx.GraphModule):
        return []
    modules = dict(model.named_modules())
    scalers = (VoltageScaler, ChannelVoltageScaler)

    def module_of(n):
        return modules.get(n.target) if n.op == "call_module" and isinstance(n.target, str) else None

    def through_folds(n):  # the time fold/unfold nodes of the step-mode adapter are transparent
        from .recipes.step_mode_adapters import TimeFold, TimeUnfold

        while isinstance(module_of(n), (TimeFold, TimeUnfold)) and n.args and isinstance(n.args[0], fx.Node):
            n = n.args[0]
        return n

    def users(n):
        from .recipes.step_mode_adapters import TimeFold, TimeUnfold

        out = []
        for u in n.users:
            out.extend(users(u) if isinstance(module_of(u), (TimeFold, TimeUnfold)) else [u])
        return out

    paths = []
    for node in model.graph.nodes:
        m = module_of(node)
        if not isinstance(m, BaseNode) or len(node.args) != 1 or not isinstance(node.args[0], fx.Node):
            continue
        if not isinstance(module_of(through_folds(node.args[0])), scalers):
            continue
        post = [module_of(u) for u in users(node) if isinstance(module_of(u), scalers)]
        if len(post) == 1:
            paths.append((m, post[0]))
    return paths


def estimate_delay_start(model: nn.Module, dataloader: Iterable, device: Union[str, torch.device], time_steps: int,
                         num_batches: int = 1) -> int:
    """Estimate the first readout step of a converted SNN (module docstring) from ``num_batches`` probe batches
    of ``dataloader``; ``time_steps`` is the simulation length (at least 4 readout steps are kept: when
    ``time_steps`` is too short a RuntimeWarning says so and ``max(time_steps - 5, 0)`` is returned). 0 when the
    model has no scaler -> neuron -> scaler path. The model's state, training flags and device are restored."""
    if isinstance(time_steps, bool) or not isinstance(time_steps, int) or time_steps <= 0:
        raise ValueError(f"estimate_delay_start: time_steps must be a positive int, but got {time_steps!r}.")
    if isinstance(num_batches, bool) or not isinstance(num_batches, int) or num_batches <= 0:
        raise ValueError(f"estimate_delay_start: num_batches must be a positive int, but got {num_batches!r}.")
    paths = _paths(model)
    if not paths:
        return 0
    ref = next(model.parameters(), None)
    ref = next(model.buffers(), None) if ref is None else ref
    original_device = ref.device if ref is not None else torch.device("cpu")
    training = {m: m.training for m in model.modules()}
    ratios: Dict[nn.Module, List[float]] = {m: [] for m, _ in paths}
    handles = []

    def hook_for(node, scaler):
        def hook(module, inputs, output):
            x = inputs[0]
            ratios[node].append(_delay_ratio(node, scaler, x))
            return torch.clamp(x, min=0, max=float(torch.as_tensor(node.v_threshold)))
        return hook

    try:
        model.eval().to(device)
        for node, scaler in paths:
            handles.append(node.register_forward_hook(hook_for(node, scaler)))
        with torch.no_grad():
            for batch in islice(dataloader, num_batches):
                functional.reset_net(model)
                model(_batch_input(batch).to(device))
        delay = sum(sum(v) / len(v) for v in ratios.values() if v)
        if not any(ratios.values()):
            warnings.warn("estimate_delay_start collected no delay ratios (no probe batch?); no delayed readout.",
                          RuntimeWarning, stacklevel=2)
    finally:
        for h in handles:
            h.remove()
        functional.reset_net(model)
        model.to(original_device)
        for m, flag in training.items():
            m.training = flag
    raw = math.ceil(delay) if math.isfinite(delay) else time_steps
    if time_steps < raw + _MIN_READOUT_STEPS:
        result = max(time_steps - _MIN_READOUT_STEPS - 1, 0)
        warnings.warn(f"estimate_delay_start: time_steps={time_steps} leaves fewer than {_MIN_READOUT_STEPS} readout "
                      f"steps after the estimated delay {raw}; returning {result}.", RuntimeWarning, stacklevel=2)
        return result
    return min(raw, time_steps - 1)
