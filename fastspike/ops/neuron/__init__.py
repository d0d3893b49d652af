"""Multi-step IF / LIF / ParametricLIF / QIF / EIF / KLIF / ILIF / LIAF op: validation, backend choice, and the
call into the op contract.

``multistep_neuron`` takes X [T, *] and V0 [*] (or a number: every neuron starts there) and returns
(spikes [T, *], V after the last step, V after every step or None). The kernels and the autograd formula are
in ``autograd.py`` (custom ops ``fastspike::neuron_cpp`` / ``fastspike::neuron_triton``), the C++ launchers
in ``cpu.py``, the Triton kernels in kernels/neuron.py; ops/reference.py is the oracle and the fallback.

This op runs once per neuron layer per call, so its Python overhead is part of every small network's
step time: ``plan_neuron`` validates a configuration into a ``NeuronPlan`` (the kernels' scalars, cached per
distinct value in ``_config``), a neuron module keeps its plan between calls and runs it with ``run_neuron``
(``multistep_neuron`` is the two in one call), and a constant V0 never becomes a tensor (the kernels take it as
a number).
"""
from __future__ import annotations

import functools
import math
from typing import NamedTuple, Optional, Tuple, Union

import torch

from ... import _ext
from ..._apply import _functorch_active, tracing
from .. import _backend, reference
from ..bits.known import mark_binary, mark_output_binary
from .autograd import OPS

__all__ = ["multistep_neuron", "plan_neuron", "run_neuron", "NeuronPlan", "NeuronConfig"]

_MODES = {"if": 0, "lif": 1, "plif": 2, "qif": 3, "eif": 4, "leaky": 5}
_TAU_MODES = ("lif", "qif", "eif", "leaky")
# fire variants (csrc/neuron_fire.h): the charge each one takes, and the analog output's activations
_FIRES = {"spike": 0, "klif": 1, "count": 3, "analog": 4, "offset": 5}
_FIRE_MODES = {"spike": ("if", "lif", "plif", "qif", "eif"), "klif": ("lif",), "count": ("leaky",),
               "analog": ("lif",), "offset": ("if",)}
ACTS = {"identity": 0, "relu": 1, "sigmoid": 2}
_F32 = torch.float32


class NeuronConfig(NamedTuple):
    """The scalars a kernel needs besides v0_value, in the order of ``autograd.CONFIG`` after it."""
    mode: int
    tau: float
    decay_input: bool
    v_threshold: float
    v_reset: float  # 0.0 with soft reset
    soft_reset: bool
    detach_reset: bool
    sg: int
    sg_a: float
    sg_b: float
    p1: float  # QIF: a0; EIF: delta_T; else 0
    p2: float  # QIF: v_rest; EIF: theta_rh; else 0
    p3: float  # QIF: v_c; EIF: v_rest; else 0
    fire: int  # 0 spike, 1 KLIF, 2 KLIF with scale_reset, 3 count (ILIF), 4 analog (LIAF), 5 offset (AAIF)
    act: int  # analog: 0 identity, 1 relu, 2 sigmoid; else 0
    q1: float  # count: max_spike_count; analog: the offset subtracted before act (v_threshold or 0); offset:
    # v_offset; else 0
    q2: float  # count: grad_window[0]; else 0
    q3: float  # count: grad_window[1]; else 0


def memory_order(x: torch.Tensor) -> Optional[Tuple[int, ...]]:
    """The permutation of x's dimensions that lists them in memory order with T kept first, when ``x.permute(perm)``
    is contiguous and x is not (channels_last activations: [T, N, C, H, W] stored as T x N x H x W x C); else None.
    The kernels are elementwise over neurons, so they run on that contiguous view, and the outputs are permuted
    back: a channels_last input gives channels_last outputs and gradients with no layout copy."""
    if x.ndim < 3 or x.is_contiguous():
        return None
    perm = (0, *sorted(range(1, x.ndim), key=lambda d: (-x.stride(d), d)))
    return perm if x.permute(perm).is_contiguous() else None


def _finite(name: str, value, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number{' or None' if allow_none else ''}, but got {value!r}.")


def _nonlinear_params(mode: str, params) -> Tuple[float, float, float]:
    """(p1, p2, p3) of the kernels: QIF's (a0, v_rest, v_c), EIF's (delta_T, theta_rh, v_rest), else zeros."""
    if mode not in ("qif", "eif"):
        return 0.0, 0.0, 0.0
    a0, v_c, delta_T, theta_rh, v_rest = params
    names = ("a0", "v_rest", "v_c") if mode == "qif" else ("delta_T", "theta_rh", "v_rest")
    values = (a0, v_rest, v_c) if mode == "qif" else (delta_T, theta_rh, v_rest)
    for name, value in zip(names, values):
        _finite(name, value)
    if not values[0] > 0:
        raise ValueError(f"{names[0]} must be > 0 for mode={mode!r}, but got {values[0]!r}.")
    return tuple(float(v) for v in values)


def _fire_params(fire: str, mode: str, v_threshold, v_reset, fire_args) -> Tuple[int, int, float, float, float]:
    """(fire id, act id, q1, q2, q3) of the kernels; ``fire_args``: (scale_reset, max_spike_count, grad_window, act,
    threshold_related, v_offset)."""
    if fire not in _FIRES:
        raise ValueError(f"fire must be one of {tuple(_FIRES)}, but got {fire!r}.")
    if mode not in _FIRE_MODES[fire]:
        raise ValueError(f"fire={fire!r} takes mode {' or '.join(map(repr, _FIRE_MODES[fire]))}, but got {mode!r}.")
    scale_reset, count, window, act, threshold_related, v_offset = fire_args
    if fire == "klif":
        return (2 if scale_reset else 1), 0, 0.0, 0.0, 0.0
    if fire == "count":
        if v_reset is not None:
            raise ValueError(f"fire='count' resets softly: v_reset must be None, but got {v_reset!r}.")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"max_spike_count must be an integer >= 1, but got {count!r}.")
        if not (isinstance(window, tuple) and len(window) == 2):
            raise ValueError(f"grad_window must be a pair (grad_min, grad_max), but got {window!r}.")
        _finite("grad_window[0]", window[0])
        _finite("grad_window[1]", window[1])
        return 3, 0, float(count), float(window[0]), float(window[1])
    if fire == "analog":
        if act not in ACTS:
            raise ValueError(f"act must be one of {tuple(ACTS)} for fire='analog', but got {act!r}.")
        return 4, ACTS[act], (float(v_threshold) if threshold_related else 0.0), 0.0, 0.0
    if fire == "offset":
        _finite("v_offset", v_offset)
        return 5, 0, float(v_offset), 0.0, 0.0
    return 0, 0, 0.0, 0.0, 0.0


def _channels(x_seq: torch.Tensor, v_threshold, v_offset, channel_dim, fire: str):
    """None for number thresholds and offsets; else (pc, dim): pc the [2, C] float32 thresholds and offsets on
    x_seq's device, dim the channel dimension of x_seq (>= 1). A 1-element tensor (0-d or 1-D) is one value for every
    channel: read on the device like the others (no host synchronisation), and when neither is longer C is 1."""
    if not (isinstance(v_threshold, torch.Tensor) or isinstance(v_offset, torch.Tensor)):
        return None
    if fire != "offset":
        raise ValueError(f"per-channel v_threshold / v_offset tensors take fire='offset', but got fire={fire!r}.")
    if isinstance(channel_dim, bool) or not isinstance(channel_dim, int):
        raise TypeError(f"channel_dim must be an int, but got {channel_dim!r}.")
    dim = channel_dim + x_seq.ndim if channel_dim < 0 else channel_dim
    if not 1 <= dim < x_seq.ndim:
        raise ValueError(f"channel_dim={channel_dim} must name a dimension of x_seq {tuple(x_seq.shape)} after T.")
    values = (("v_threshold", v_threshold), ("v_offset", v_offset))
    one = all(not isinstance(v, torch.Tensor) or (v.ndim <= 1 and v.numel() == 1) for _, v in values)
    C = 1 if one else x_seq.shape[dim]
    rows = []
    for name, value in values:
        if isinstance(value, torch.Tensor):
            if value.ndim > 1 or value.numel() not in (1, C) or value.is_complex():
                raise ValueError(f"{name} must be a number, a 1-element tensor or a 1-D tensor of {C} values (x_seq's "
                                 f"dimension {channel_dim}), but got a tensor of shape {tuple(value.shape)}.")
            rows.append(value.detach().to(device=x_seq.device, dtype=torch.float32).reshape(-1).expand(C))
        else:
            _finite(name, value)
            rows.append(torch.full((C,), float(value), dtype=torch.float32, device=x_seq.device))
    return torch.stack(rows), dim


def _channel_views(x_seq: torch.Tensor, channels, perm) -> Tuple[torch.Tensor, torch.Tensor]:
    """The reference's thresholds and offsets: views that broadcast over one step of x_seq (after ``perm``)."""
    pc, dim = channels
    pos = perm.index(dim) if perm is not None else dim
    shape = [1] * (x_seq.ndim - 1)
    shape[pos - 1] = pc.shape[1]
    pc = pc.to(torch.float64 if x_seq.dtype == torch.float64 else torch.float32)
    return pc[0].view(shape), pc[1].view(shape)


def _inner(x_seq: torch.Tensor, dim: int, perm) -> int:
    """Neurons per channel step in x_seq's contiguous (possibly permuted) layout: neuron n is in channel
    (n // inner) % C."""
    pos = perm.index(dim) if perm is not None else dim
    return math.prod(x_seq.shape[pos + 1:])


@functools.lru_cache(maxsize=512)
def _config(mode: str, tau, decay_input, v_threshold, v_reset, detach_reset, spec, params=None, fire="spike",
            fire_args=(False, 4, (0.0, 4.0), "relu", True, 0.0)) -> NeuronConfig:
    """Validate one configuration and freeze it (cached: a network repeats the same few every call). ``params``:
    (a0, v_c, delta_T, theta_rh, v_rest) for 'qif' / 'eif'; ``fire_args``: see ``_fire_params``."""
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {tuple(_MODES)}, but got {mode!r}.")
    if mode in _TAU_MODES and not (isinstance(tau, (int, float)) and not isinstance(tau, bool)
                                   and math.isfinite(tau) and tau > 1.0):
        raise ValueError(f"tau must be a finite number > 1, but got {tau!r}.")
    _finite("v_threshold", v_threshold)
    _finite("v_reset", v_reset, allow_none=True)
    p1, p2, p3 = _nonlinear_params(mode, params)
    if mode == "leaky":
        p1 = 1.0 - 1.0 / tau  # H = p1 V + X
    fire_ids = _fire_params(fire, mode, v_threshold, v_reset, fire_args)
    sg, (sg_a, sg_b) = spec
    return NeuronConfig(_MODES[mode], float(tau) if mode in _TAU_MODES else 1.0, bool(decay_input),
                        float(v_threshold), 0.0 if v_reset is None else float(v_reset), v_reset is None,
                        bool(detach_reset), int(sg), float(sg_a), float(sg_b), p1, p2, p3, *fire_ids)


def multistep_neuron(
    x_seq: torch.Tensor,
    v_init: Union[torch.Tensor, float],
    *,
    mode: str = "lif",
    tau: float = 2.0,
    w: Optional[torch.Tensor] = None,
    decay_input: bool = True,
    v_threshold: Union[float, torch.Tensor] = 1.0,
    v_reset: Optional[float] = 0.0,
    surrogate_function=None,
    detach_reset: bool = False,
    store_v_seq: bool = False,
    backend: Optional[str] = None,
    a0: float = 1.0,
    v_c: float = 0.8,
    delta_T: float = 1.0,
    theta_rh: float = 0.8,
    v_rest: float = 0.0,
    fire: str = "spike",
    k: Optional[torch.Tensor] = None,
    scale_reset: bool = False,
    max_spike_count: int = 4,
    grad_window: Optional[Tuple[float, float]] = None,
    act: str = "relu",
    threshold_related: bool = True,
    v_offset: Union[float, torch.Tensor] = 0.0,
    channel_dim: int = 1,
) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """Run an IF ('if'), LIF ('lif'), ParametricLIF ('plif', decay sigmoid(w)), quadratic IF ('qif':
    H = V + (X + a0 (V - v_rest)(V - v_c)) / tau) or exponential IF ('eif': H = V + (X + v_rest - V
    + delta_T exp((V - theta_rh) / delta_T)) / tau) neuron over T steps (QIF/EIF ignore decay_input); 'leaky' is
    H = (1 - 1/tau) V + X (ILIF's charge).

    fire: 'spike' (Heaviside of H - v_threshold with the surrogate's gradient); 'klif' (KLIF, mode 'lif': F = relu(k H)
    fires and is reset, ``k`` a 1-element tensor that gets its gradient; ``scale_reset`` resets F / k by
    v_threshold / k); 'count' (ILIF, mode 'leaky', v_reset=None: S = round(clamp(H / v_threshold, 0,
    max_spike_count)), gradient 1 / v_threshold where H / v_threshold lies in ``grad_window``, default [0,
    max_spike_count]; the surrogate is not used); 'analog' (LIAF, mode 'lif': the first output is act(H - v_threshold)
    with ``threshold_related``, else act(H), act 'identity', 'relu' or 'sigmoid'; the spike only resets); 'offset'
    (ActivationAwareIF, mode 'if': S = Heaviside(H + v_offset - v_threshold), V reset from H). With fire='offset',
    ``v_threshold`` and ``v_offset`` may also be 1-D tensors with one value per channel, the channels being dimension
    ``channel_dim`` of x_seq (1: [T, N, C, ...] is per C; -1: the last); they get no gradient, and their values are not
    checked (a NaN compares false, as in the reference). A 1-element tensor (0-d or 1-D) is one value for every neuron,
    read by the kernels on the tensor's device (no host synchronisation on CUDA).

    v_init: the membrane potential before the first step, a tensor of shape x_seq.shape[1:] or a number
    (the same start for every neuron; it gets no gradient). Returns (spike_seq [T, *], v_last [*],
    v_seq [T, *] or None). ``backend``: 'auto' (default: triton for CUDA, cpp for CPU, the reference for
    float64), 'torch', 'triton' or 'cpp'. A surrogate that the kernels do not fuse (a custom class,
    spiking=False, tensor parameters) runs the reference.
    """
    plan = plan_neuron(mode=mode, tau=tau, decay_input=decay_input, v_threshold=v_threshold, v_reset=v_reset,
                       surrogate_function=surrogate_function, detach_reset=detach_reset, backend=backend, a0=a0,
                       v_c=v_c, delta_T=delta_T, theta_rh=theta_rh, v_rest=v_rest, fire=fire,
                       scale_reset=scale_reset, max_spike_count=max_spike_count, grad_window=grad_window, act=act,
                       threshold_related=threshold_related, v_offset=v_offset, channel_dim=channel_dim)
    return _run(plan, x_seq, v_init, store_v_seq, w, k)


class NeuronPlan(NamedTuple):
    """One configuration of ``multistep_neuron`` (everything but x_seq, v_init, store_v_seq, w and k), validated
    by ``plan_neuron``. A neuron module keeps its plan until one of its attributes is assigned and calls
    ``run_neuron`` with it: a small layer's call then pays only for the checks of its tensors."""
    kwargs: dict  # the configuration as given: planned again when the surrogate's kernel_spec() changes
    spec_fn: Optional[object]  # the surrogate's kernel_spec, asked on every call (its settings may change)
    spec: Optional[tuple]  # what it returned when planned; None: the kernels do not fuse this surrogate
    cfg: NeuronConfig
    per_channel: bool  # v_threshold / v_offset are per-channel tensors (the offset fire)
    binary: bool  # the forward is a Heaviside: spikes are 0 / 1
    lane: bool  # C++ kernels, no tensor but x: ``_run`` may take its short path (see ``_lane``)


def plan_neuron(*, mode: str = "lif", tau: float = 2.0, decay_input: bool = True,
                v_threshold: Union[float, torch.Tensor] = 1.0, v_reset: Optional[float] = 0.0,
                surrogate_function=None, detach_reset: bool = False, backend: Optional[str] = None, a0: float = 1.0,
                v_c: float = 0.8, delta_T: float = 1.0, theta_rh: float = 0.8, v_rest: float = 0.0,
                fire: str = "spike", scale_reset: bool = False, max_spike_count: int = 4,
                grad_window: Optional[Tuple[float, float]] = None, act: str = "relu", threshold_related: bool = True,
                v_offset: Union[float, torch.Tensor] = 0.0, channel_dim: int = 1) -> NeuronPlan:
    """Validate ``multistep_neuron``'s configuration (its keyword arguments but store_v_seq, w and k) into a
    ``NeuronPlan`` for ``run_neuron``; raises the errors ``multistep_neuron`` raises for them."""
    kwargs = dict(mode=mode, tau=tau, decay_input=decay_input, v_threshold=v_threshold, v_reset=v_reset,
                  surrogate_function=surrogate_function, detach_reset=detach_reset, backend=backend, a0=a0, v_c=v_c,
                  delta_T=delta_T, theta_rh=theta_rh, v_rest=v_rest, fire=fire, scale_reset=scale_reset,
                  max_spike_count=max_spike_count, grad_window=grad_window, act=act,
                  threshold_related=threshold_related, v_offset=v_offset, channel_dim=channel_dim)
    if grad_window is None:
        grad_window = (0.0, float(max_spike_count)) if isinstance(max_spike_count, int) else (0.0, 0.0)
    if surrogate_function is None or fire == "count":
        spec_fn, spec = None, (0, (4.0, 0.0))  # Sigmoid(alpha=4), SpikingJelly's default (the count ignores it)
    else:
        spec_fn = getattr(surrogate_function, "kernel_spec", None)
        spec = spec_fn() if spec_fn is not None else None
    # under torch.compile the validation is traced once per graph; the cache is for eager calls
    config = _config.__wrapped__ if torch.compiler.is_compiling() else _config
    nonlinear = (a0, v_c, delta_T, theta_rh, v_rest) if mode in ("qif", "eif") else None
    fire_args = (bool(scale_reset), max_spike_count, tuple(grad_window), act, bool(threshold_related), v_offset)
    per_channel = isinstance(v_threshold, torch.Tensor) or isinstance(v_offset, torch.Tensor)
    if per_channel:  # checked against x_seq per call; the configuration's scalars are then unused placeholders
        if fire != "offset":
            raise ValueError(f"per-channel v_threshold / v_offset tensors take fire='offset', but got fire={fire!r}.")
        v_threshold, fire_args = 1.0, fire_args[:-1] + (0.0,)
    cfg = config(mode, tau, decay_input, v_threshold, v_reset, detach_reset, spec or (0, (0.0, 0.0)), nonlinear, fire,
                 fire_args)
    # the short path: the C++ op may run it (backend 'auto' or 'cpp', built), and it takes no tensor besides x
    # (ParametricLIF's w, KLIF's k and per-channel thresholds go the long way)
    lane = (backend in ("auto", "cpp") and spec is not None and not per_channel and cfg.mode != 2
            and cfg.fire not in (1, 2) and _ext.available())
    return NeuronPlan(kwargs, spec_fn, spec, cfg, per_channel, spec is not None and fire in ("spike", "klif"), lane)


def run_neuron(plan: NeuronPlan, x_seq: torch.Tensor, v_init: Union[torch.Tensor, float], store_v_seq: bool = False,
               w: Optional[torch.Tensor] = None, k: Optional[torch.Tensor] = None
               ) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """``multistep_neuron`` with the configuration of ``plan`` (see ``plan_neuron``): checks the tensors, picks the
    backend and runs the op."""
    if plan.spec_fn is not None and plan.spec_fn() != plan.spec:  # the surrogate's settings changed
        plan = plan_neuron(**plan.kwargs)
    return _run(plan, x_seq, v_init, store_v_seq, w, k)


def _lane(plan: NeuronPlan, x_seq: torch.Tensor, v0: Optional[torch.Tensor], v0_value: float, store_v_seq: bool):
    """The common call, decided in a few tests: a plan with ``lane`` (see ``plan_neuron``), a plain contiguous
    float32 CPU x_seq and V0 a finite number or a float32 CPU tensor shaped and laid out as one step (a single-step
    layer's state after its first step) run the C++ op with no further checks; ``_run`` has checked all that.
    Everything the long path would decide is known: backend 'cpp', no layout permutation, no conversion."""
    need_grad = torch.is_grad_enabled() and (x_seq.requires_grad or (v0 is not None and v0.requires_grad))
    args = (v0_value, *plan.cfg, store_v_seq, need_grad, 1)
    op = OPS["cpp"]
    if need_grad:
        spikes, v_last, v_seq, _ = op.apply_eager(x_seq, v0, None, None, args)
    else:  # nothing to record (the op's own inference path)
        spikes, v_last, v_seq, _ = op.forward_kernel(x_seq, v0, None, None, *args)
    if plan.binary:
        mark_output_binary(spikes)
    return spikes, v_last, v_seq


def _run(plan: NeuronPlan, x_seq, v_init, store_v_seq: bool, w, k):
    """``run_neuron`` on a plan known to be current."""
    if (plan.lane and type(x_seq) is torch.Tensor and x_seq.dtype is _F32 and x_seq.is_cpu
            and x_seq.is_contiguous() and x_seq.numel() and not tracing(x_seq) and not _functorch_active()):
        if type(v_init) is float:
            if v_init - v_init == 0.0:  # finite
                return _lane(plan, x_seq, None, v_init, store_v_seq)
        elif (type(v_init) is torch.Tensor and v_init.dtype is _F32 and v_init.is_cpu and v_init.is_contiguous()
              and v_init.shape == x_seq.shape[1:]):
            return _lane(plan, x_seq, v_init, 0.0, store_v_seq)
    kwargs, cfg = plan.kwargs, plan.cfg
    if not isinstance(x_seq, torch.Tensor):
        raise TypeError(f"x_seq must be a torch.Tensor, but got {type(x_seq).__name__}.")
    if not x_seq.is_floating_point():
        raise TypeError(f"x_seq must be a floating-point tensor, but got dtype {x_seq.dtype}.")
    if x_seq.ndim < 1:
        raise ValueError("x_seq must have a leading time dimension [T, *], but got a 0-d tensor.")
    if isinstance(v_init, torch.Tensor):
        if v_init.shape != x_seq.shape[1:]:
            raise ValueError(f"v_init must be a tensor of shape {tuple(x_seq.shape[1:])} (x_seq without T), but got "
                             f"{tuple(v_init.shape)}. If the batch size changed, call functional.reset_net(net) "
                             "between batches.")
        if x_seq.device != v_init.device:
            raise ValueError(f"x_seq is on {x_seq.device} but v_init on {v_init.device}.")
        v0, v0_value = v_init, 0.0
    elif type(v_init) is float and math.isfinite(v_init):  # the common case: a reset state
        v0, v0_value = None, v_init
    elif isinstance(v_init, (int, float)) and not isinstance(v_init, bool):
        _finite("v_init", v_init)
        v0, v0_value = None, float(v_init)
    else:
        raise ValueError(f"v_init must be a tensor of shape {tuple(x_seq.shape[1:])} (x_seq without T) or a number, "
                         f"but got {type(v_init).__name__}.")
    if cfg.mode == 2 and (not isinstance(w, torch.Tensor) or w.numel() != 1):
        raise ValueError("w must be a 1-element tensor (1/tau = sigmoid(w)) for mode='plif'.")
    if cfg.fire in (1, 2) and (not isinstance(k, torch.Tensor) or k.numel() != 1):
        raise ValueError(f"k must be a 1-element tensor (KLIF's scale) for fire='klif', but got {k!r}.")
    backend = kwargs["backend"]
    name = _backend.resolve(backend, (x_seq,), "multistep_neuron")
    if plan.spec is None:
        name = _backend.unfused_surrogate("multistep_neuron", kwargs["surrogate_function"], backend, name)
    channels = (_channels(x_seq, kwargs["v_threshold"], kwargs["v_offset"], kwargs["channel_dim"], kwargs["fire"])
                if plan.per_channel else None)
    perm = memory_order(x_seq)
    if perm is not None:  # run on the contiguous view in memory order; permute the results back (views, no copy)
        x_seq = x_seq.permute(perm)
        if v0 is not None:
            v0 = v0.permute([d - 1 for d in perm[1:]])
    if name == "torch" or x_seq.numel() == 0:
        if v0 is None:
            v0 = torch.full(x_seq.shape[1:], v0_value, dtype=x_seq.dtype, device=x_seq.device)
        ref = dict(kwargs)
        del ref["backend"], ref["channel_dim"]
        if channels is not None:  # broadcast views over one step in x_seq's (possibly permuted) order
            ref["v_threshold"], ref["v_offset"] = _channel_views(x_seq, channels, perm)
        if ref["grad_window"] is None:
            ref["grad_window"] = (0.0, float(ref["max_spike_count"])) if isinstance(ref["max_spike_count"], int) \
                else (0.0, 0.0)
        ref["grad_window"] = tuple(ref["grad_window"])
        spikes, v_last, v_seq = reference.multistep_neuron(x_seq, v0, w=w, k=k, store_v_seq=store_v_seq, **ref)
    else:
        if not x_seq.is_contiguous():
            x_seq = x_seq.contiguous()
        if v0 is not None and not v0.is_contiguous():
            v0 = v0.contiguous()
        # the op's k: ParametricLIF's decay sigmoid(w) or KLIF's scale, a 0-d tensor
        kt = torch.sigmoid(w.reshape(())) if cfg.mode == 2 else (k.reshape(()) if cfg.fire in (1, 2) else None)
        need_grad = torch.is_grad_enabled() and (x_seq.requires_grad or (v0 is not None and v0.requires_grad)
                                                 or (kt is not None and kt.requires_grad))
        pc, inner = (None, 1) if channels is None else (channels[0], _inner(x_seq, channels[1], perm))
        spikes, v_last, v_seq, _ = OPS[name](x_seq, v0, kt, pc, v0_value, *cfg, store_v_seq, need_grad, inner)
        v_seq = v_seq if store_v_seq else None
    if plan.binary:  # a fused surrogate: the forward is Heaviside, binary spikes
        mark_binary(spikes)
    if perm is not None:
        inverse = [perm.index(d) for d in range(len(perm))]
        spikes = spikes.permute(inverse)
        v_last = v_last.permute([d - 1 for d in inverse[1:]])
        v_seq = v_seq.permute(inverse) if v_seq is not None else None
    return spikes, v_last, v_seq
