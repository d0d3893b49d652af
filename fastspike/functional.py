"""Network-level helpers with SpikingJelly 2.0.0's ``activation_based.functional`` names.

* Network configuration: :func:`reset_net`, :func:`set_step_mode`, :func:`set_backend`, :func:`detach_net`.
* Running modules over time: :func:`multi_step_forward` (loop a stateful single-step module over T),
  :func:`seq_to_ann_forward` (fold T into the batch for a stateless module), their time-last variants
  and :func:`chunk_multi_step_forward`.
* Small training utilities: :func:`first_spike_index`, :func:`redundant_one_hot`, :func:`delay`,
  :func:`kaiming_normal_conv_linear_weight`, :func:`set_threshold_margin` and the spike losses
  :func:`temporal_efficient_training_cross_entropy`, :func:`spike_similar_loss`, :func:`kernel_dot_product`.
"""
from __future__ import annotations

import math
import warnings
from typing import Callable, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import base

__all__ = [
    # network configuration
    "collect_reset_modules",
    "reset_net",
    "set_step_mode",
    "set_backend",
    "detach_net",
    # forward over time
    "multi_step_forward",
    "t_last_multi_step_forward",
    "chunk_multi_step_forward",
    "seq_to_ann_forward",
    "t_last_seq_to_ann_forward",
    # misc
    "set_threshold_margin",
    "redundant_one_hot",
    "first_spike_index",
    "kaiming_normal_conv_linear_weight",
    "delay",
    # losses
    "kernel_dot_product",
    "spike_similar_loss",
    "temporal_efficient_training_cross_entropy",
]

ModuleLike = Union[nn.Module, Sequence[nn.Module], Callable]


# ------------------------------------------------------------------------------------------------
# network configuration
# ------------------------------------------------------------------------------------------------
def collect_reset_modules(net: nn.Module) -> Tuple[nn.Module, ...]:
    """Every module of ``net`` (itself included) that has a callable ``reset()``."""
    return tuple(m for m in net.modules() if callable(getattr(m, "reset", None)))


def reset_net(net: nn.Module) -> None:
    """Restore the state of every stateful module of ``net`` (membrane potentials, dropout masks, ...).

    Call it between two independent input sequences (typically after every batch).
    """
    if not isinstance(net, nn.Module):
        raise TypeError(f"reset_net: net must be a torch.nn.Module, but got {type(net).__name__}.")
    for m in collect_reset_modules(net):
        m.reset()


def _fixed_step_mode_types() -> tuple:
    from .layer import container  # lazy: layer imports this module

    return container.KEEP_STEP_MODE_TYPES


def set_step_mode(net: nn.Module, step_mode: str) -> None:
    """Set ``step_mode`` ('s': one step [N, *] per call, 'm': a sequence [T, N, *]) on every module of ``net``.

    Containers that fix the step mode of their children (SeqToANNContainer, MultiStepContainer,
    StepModeContainer, the recurrent containers) are not entered: their children stay in 's' mode.
    Modules whose own step mode is fixed (e.g. SeqToANNContainer, always 'm') are left unchanged.
    """
    if not isinstance(net, nn.Module):
        raise TypeError(f"set_step_mode: net must be a torch.nn.Module, but got {type(net).__name__}.")
    if step_mode not in ("s", "m"):
        raise ValueError(f"set_step_mode: step_mode must be 's' (single step) or 'm' (multi step), but got {step_mode!r}.")
    keep = _fixed_step_mode_types()
    stack = [net]
    while stack:
        m = stack.pop()
        if isinstance(m, base.StepModule):
            if step_mode in m.supported_step_mode():
                m.step_mode = step_mode
            elif not isinstance(m, keep):
                raise ValueError(
                    f"set_step_mode: {type(m).__name__} supports step_mode {m.supported_step_mode()} only, "
                    f"so it cannot be set to {step_mode!r}.")
        elif hasattr(m, "step_mode"):
            warnings.warn(f"set_step_mode: {type(m).__name__} is not a fastspike.base.StepModule; "
                          f"setting its step_mode={step_mode!r} without validation.", stacklevel=2)
            m.step_mode = step_mode
        if not isinstance(m, keep):
            stack.extend(reversed(tuple(m.children())))


def set_backend(net: nn.Module, backend: str, instance: Union[type, Tuple[type, ...]] = (nn.Module,)) -> None:
    """Set ``backend`` on every module of ``net`` that is an instance of ``instance`` and has a ``backend``.

    ``backend`` is one of ``fastspike.ops._backend.BACKENDS`` ('auto', 'torch', 'triton', 'cpp').
    A module that lists ``supported_backends`` without this one is skipped with a warning.
    """
    from .ops._backend import BACKENDS

    if not isinstance(net, nn.Module):
        raise TypeError(f"set_backend: net must be a torch.nn.Module, but got {type(net).__name__}.")
    if backend not in BACKENDS:
        raise ValueError(f"set_backend: backend must be one of {BACKENDS}, but got {backend!r}.")
    for m in net.modules():
        if not isinstance(m, instance) or not hasattr(m, "backend"):
            continue
        supported = getattr(m, "supported_backends", None)
        if supported is not None and backend not in supported:
            warnings.warn(f"set_backend: {type(m).__name__} supports backends {tuple(supported)}, "
                          f"not {backend!r}; left at {m.backend!r}.", stacklevel=2)
            continue
        m.backend = backend


def detach_net(net: nn.Module) -> None:
    """Cut the autograd history of every module state of ``net`` (truncated BPTT), keeping the values."""
    if not isinstance(net, nn.Module):
        raise TypeError(f"detach_net: net must be a torch.nn.Module, but got {type(net).__name__}.")
    for m in net.modules():
        if callable(getattr(m, "detach", None)):
            m.detach()


# ------------------------------------------------------------------------------------------------
# running modules over time
# ------------------------------------------------------------------------------------------------
def _apply(x, modules: ModuleLike):
    """Call ``modules`` (a callable, or a list/tuple of callables applied in order) on ``x``.

    A tuple ``x`` is unpacked into the first call's arguments.
    """
    args = x if isinstance(x, tuple) else (x,)
    if isinstance(modules, (list, tuple)):
        for module in modules:
            x = module(*args)
            args = (x,)
        return x
    return modules(*args)


def _check_seq(fn: str, x_seq: torch.Tensor, min_dim: int) -> None:
    if not isinstance(x_seq, torch.Tensor):
        raise TypeError(f"{fn}: x_seq must be a torch.Tensor, but got {type(x_seq).__name__}.")
    if x_seq.dim() < min_dim:
        layout = "[T, N, ...]" if min_dim >= 2 else "[T, ...]"
        raise ValueError(f"{fn}: x_seq must have shape {layout} (at least {min_dim} dimensions), "
                         f"but got shape {tuple(x_seq.shape)}.")


def multi_step_forward(x_seq: torch.Tensor, single_step_module: ModuleLike) -> torch.Tensor:
    """Run a (stateful) single-step module over time: ``y[t] = module(x[t])`` for t in 0..T-1.

    :param x_seq: [T, N, *]
    :param single_step_module: a module, a callable, or a list/tuple of them applied in order
    :return: y_seq with shape [T, N, *out]
    """
    _check_seq("multi_step_forward", x_seq, 1)
    return torch.stack([_apply(x_seq[t], single_step_module) for t in range(x_seq.shape[0])])


def t_last_multi_step_forward(x_seq: torch.Tensor, single_step_module: ModuleLike) -> torch.Tensor:
    """:func:`multi_step_forward` for a time-last layout: x_seq [N, *, T] -> y_seq [N, *out, T]."""
    _check_seq("t_last_multi_step_forward", x_seq, 1)
    return torch.stack([_apply(x_seq.select(-1, t), single_step_module) for t in range(x_seq.shape[-1])], dim=-1)


def chunk_multi_step_forward(split_size: int, x_seq: torch.Tensor, multi_step_module: nn.Module) -> torch.Tensor:
    """Feed ``x_seq`` [T, N, *] to a multi-step module in chunks of ``split_size`` steps (saves memory at
    inference); the module's state carries over from chunk to chunk."""
    if not isinstance(split_size, int) or split_size < 1:
        raise ValueError(f"chunk_multi_step_forward: split_size must be a positive int, but got {split_size!r}.")
    _check_seq("chunk_multi_step_forward", x_seq, 1)
    return torch.cat([multi_step_module(chunk) for chunk in torch.split(x_seq, split_size)], 0)


def seq_to_ann_forward(x_seq: Union[torch.Tensor, Tuple[torch.Tensor, ...]], stateless_module: ModuleLike):
    """Run a stateless module on every step at once by folding time into the batch:
    [T, N, *] -> [T*N, *] -> module -> [T*N, *out] -> [T, N, *out].

    ``x_seq`` may be a tuple of tensors sharing [T, N]; a tuple output is unfolded item by item.
    """
    if isinstance(x_seq, tuple):
        for item in x_seq:
            _check_seq("seq_to_ann_forward", item, 2)
        lead = x_seq[0].shape[:2]
        if any(item.shape[:2] != lead for item in x_seq[1:]):
            raise ValueError("seq_to_ann_forward: every tensor of x_seq must share the leading [T, N] dimensions, "
                             f"but got shapes {[tuple(item.shape) for item in x_seq]}.")
        x = tuple(item.flatten(0, 1) for item in x_seq)
    else:
        _check_seq("seq_to_ann_forward", x_seq, 2)
        lead = x_seq.shape[:2]
        x = x_seq.flatten(0, 1)
    y = _apply(x, stateless_module)
    if isinstance(y, tuple):
        return tuple(item.unflatten(0, tuple(lead)) for item in y)
    return y.unflatten(0, tuple(lead))


def t_last_seq_to_ann_forward(x_seq: torch.Tensor, stateless_module: ModuleLike):
    """:func:`seq_to_ann_forward` for a time-last layout: x_seq [N, *, T] -> y_seq [N, *out, T]."""
    _check_seq("t_last_seq_to_ann_forward", x_seq, 2)
    x = x_seq.movedim(-1, 0)
    lead = x.shape[:2]
    y = _apply(x.flatten(0, 1), stateless_module)
    if isinstance(y, tuple):
        return tuple(item.unflatten(0, tuple(lead)).movedim(0, -1) for item in y)
    return y.unflatten(0, tuple(lead)).movedim(0, -1)


# ------------------------------------------------------------------------------------------------
# misc
# ------------------------------------------------------------------------------------------------
def set_threshold_margin(output_layer: nn.Module, label_one_hot: torch.Tensor, eval_threshold: float = 1.0,
                         threshold0: float = 0.9, threshold1: float = 1.1) -> None:
    """Training: give the output neurons of the true class threshold ``threshold1`` and the others
    ``threshold0`` (a margin between classes); evaluation: every neuron gets ``eval_threshold``."""
    if output_layer.training:
        v_th = torch.full_like(label_one_hot, threshold0, dtype=torch.get_default_dtype()
                               if not label_one_hot.is_floating_point() else label_one_hot.dtype)
        v_th[label_one_hot == 1] = threshold1
        output_layer.v_threshold = v_th
    else:
        output_layer.v_threshold = eval_threshold


def redundant_one_hot(labels: torch.Tensor, num_classes: int, n: int) -> torch.Tensor:
    """One-hot labels with every class repeated ``n`` times: [N] -> [N, num_classes * n] (float),
    for an output layer with ``n`` neurons per class."""
    if n < 1:
        raise ValueError(f"redundant_one_hot: n must be >= 1, but got {n}.")
    return F.one_hot(labels, num_classes).repeat_interleave(n, dim=-1).to(torch.get_default_dtype())


def first_spike_index(spikes: torch.Tensor) -> torch.Tensor:
    """Boolean mask of each neuron's first spike along the LAST dimension (time-last layout [*, T]):
    True exactly where the first nonzero of every row sits."""
    fired = spikes != 0
    return fired & (fired.cumsum(dim=-1) == 1)


def kaiming_normal_conv_linear_weight(net: nn.Module) -> None:
    """Kaiming-normal initialise (a=sqrt(5)) the weight of every Conv1d/2d/3d and Linear of ``net``."""
    for m in net.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, a=math.sqrt(5))


def delay(x_seq: torch.Tensor, delay_steps: int) -> torch.Tensor:
    """Shift ``x_seq`` [T, *] later in time by ``delay_steps``, filling the first steps with zeros."""
    if not isinstance(delay_steps, int) or delay_steps < 0:
        raise ValueError(f"delay: delay_steps must be a non-negative int, but got {delay_steps!r}.")
    if delay_steps == 0:
        return x_seq
    T = x_seq.shape[0]
    if delay_steps >= T:
        return torch.zeros_like(x_seq)
    return torch.cat((x_seq.new_zeros((delay_steps, *x_seq.shape[1:])), x_seq[: T - delay_steps]))


# ------------------------------------------------------------------------------------------------
# losses
# ------------------------------------------------------------------------------------------------
def kernel_dot_product(x: torch.Tensor, y: torch.Tensor, kernel: str = "linear", *args) -> torch.Tensor:
    """Kernel matrix K[i, j] = k(x[i], y[j]) for x [N, D], y [M, D].

    kernel: 'linear' (x.y), 'polynomial' ((x.y)^d, args=(d,)), 'sigmoid' (sigmoid(alpha x.y), args=(alpha,)),
    'gaussian' (exp(-|x-y|^2 / (2 sigma^2)), args=(sigma,)).
    """
    if kernel == "linear":
        return x @ y.t()
    if kernel == "polynomial":
        return (x @ y.t()).pow(args[0])
    if kernel == "sigmoid":
        return torch.sigmoid(args[0] * (x @ y.t()))
    if kernel == "gaussian":
        sigma = args[0]
        if sigma <= 0:
            raise ValueError(f"kernel_dot_product: sigma must be positive for the gaussian kernel, but got {sigma}.")
        d2 = x.square().sum(1, keepdim=True) + y.square().sum(1).unsqueeze(0) - 2 * (x @ y.t())
        return torch.exp(-d2 / (2 * sigma * sigma))
    raise ValueError(f"kernel_dot_product: kernel must be 'linear', 'polynomial', 'sigmoid' or 'gaussian', "
                     f"but got {kernel!r}.")


def spike_similar_loss(spikes: torch.Tensor, labels: torch.Tensor, kernel_type: str = "linear",
                       loss_type: str = "mse", *args) -> torch.Tensor:
    """Loss that makes the spike trains of samples sharing a label similar and the others dissimilar.

    :param spikes: [N, *] spike trains (flattened per sample)
    :param labels: [N, C] multi-hot labels
    :param loss_type: 'mse', 'l1' or 'bce' between the kernel similarity and the label co-occurrence (0/1)
    """
    spikes = spikes.flatten(1)
    sim_p = kernel_dot_product(spikes, spikes, kernel_type, *args)
    if kernel_type == "linear":
        norm = spikes.norm(p=2, dim=1, keepdim=True)
        sim_p = sim_p / (norm @ norm.t() + 1e-8)
    labels = labels.float()
    sim = (labels @ labels.t()).clamp_max(1)
    if loss_type == "mse":
        return F.mse_loss(sim_p, sim)
    if loss_type == "l1":
        return F.l1_loss(sim_p, sim)
    if loss_type == "bce":
        return F.binary_cross_entropy(sim_p, sim)
    raise ValueError(f"spike_similar_loss: loss_type must be 'mse', 'l1' or 'bce', but got {loss_type!r}.")


def temporal_efficient_training_cross_entropy(x_seq: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """TET loss (Deng et al., ICLR 2022): the mean over time steps of the cross entropy of every step's
    output, ``mean_t CE(x_seq[t], target)``.

    :param x_seq: [T, N, C] (or [T, N, C, *] for dense prediction) logits of every step
    :param target: [N] class indices (or [N, *])
    """
    if x_seq.dim() < 3:
        raise ValueError("temporal_efficient_training_cross_entropy: x_seq must have shape [T, N, C, *], "
                         f"but got shape {tuple(x_seq.shape)}.")
    T = x_seq.shape[0]
    # [T, N, C, *] -> [N, C, T, *]; cross_entropy then averages over N, T and *
    logits = x_seq.movedim(0, 2)
    tgt = target.unsqueeze(1).expand(target.shape[0], T, *target.shape[1:])
    return F.cross_entropy(logits, tgt)
