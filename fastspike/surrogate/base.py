"""The surrogate-function base class and the helpers every surrogate shares.

* :func:`heaviside`: the spike (1 where x >= 0);
* :class:`SurrogateFunctionBase`: an ``nn.Module`` whose forward is Heaviside (``spiking=True``) or the smooth
  primitive function (``spiking=False``), with SpikingJelly 2.0.0's constructor ``(spiking=True, **kwargs)``:
  each keyword becomes an attribute and a parameter of ``spiking_function`` / ``primitive_function``;
* :func:`check_manual_grad` and :func:`plot_surrogate_function`, SpikingJelly's tools for writing a surrogate.

The fused-kernel interface (``kernel_id``, ``kernel_params()``, ``fusable()``, ``kernel_spec()``) lives here
too; ``fastspike.surrogate.builtins`` lists the ids the kernels implement.
"""
from __future__ import annotations

import inspect
import os
import tempfile
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn

from .._apply import fast_apply

__all__ = ["heaviside", "SurrogateFunctionBase", "check_manual_grad", "plot_surrogate_function"]


_UNSET = object()
#: kernel_id -> the grad function the fused kernels implement for it (filled by builtins.py)
KERNEL_GRADS: Dict[int, object] = {}


def heaviside(x: torch.Tensor) -> torch.Tensor:
    """1 where x >= 0, else 0, in x's dtype."""
    return (x >= 0).to(x)


class _Spike(torch.autograd.Function):
    """Heaviside forward; backward multiplies by the surrogate's derivative ``grad_fn(x, *params)``. Both are
    PyTorch operations, so torch.func transforms apply it (vmap by its generated rule)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, grad_fn, params):
        return heaviside(x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, ctx.grad_fn, ctx.params = inputs
        ctx.save_for_backward(x)

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return grad_output * ctx.grad_fn(x, *ctx.params), None, None


_spike = fast_apply(_Spike)


class SurrogateFunctionBase(nn.Module):
    """Base class of every surrogate.

    ``SurrogateFunctionBase(spiking=True, **kwargs)``: each keyword argument (``alpha=2.0``, ...) becomes an
    attribute and, in that order, a parameter of ``spiking_function(x, *params)`` and
    ``primitive_function(x, *params)``. A subclass either defines ``grad(x, *params)`` (the derivative used
    backward; ``spiking_function`` then needs no code) or its own ``spiking_function`` (e.g. an
    ``autograd.Function.apply``), as in SpikingJelly.
    """

    _param_names: Tuple[str, ...] = ("alpha",)
    kernel_id: int = -1

    def __init__(self, spiking: bool = True, **kwargs):
        super().__init__()
        self.spiking = spiking
        if kwargs or type(self)._param_names == SurrogateFunctionBase._param_names:
            self._param_names = tuple(kwargs)
        for k, v in kwargs.items():
            setattr(self, k, v)

    def set_spiking_mode(self, spiking: bool) -> None:
        self.spiking = spiking

    @property
    def params(self) -> tuple:
        return tuple(getattr(self, k) for k in self._param_names)

    @property
    def _sg_param_names(self) -> Tuple[str, ...]:  # SpikingJelly 2.0's attribute names
        return self._param_names

    @property
    def _sg_params(self) -> dict:
        return {k: getattr(self, k) for k in self._param_names}

    # -- the fused-kernel interface ------------------------------------------------------------------
    def kernel_params(self) -> Tuple[float, float]:
        """The (a, b) pair the fused kernels take for this surrogate (unused slots are 0)."""
        p = [float(v) for v in self.params] + [0.0, 0.0]
        return p[0], p[1]

    def fusable(self) -> bool:
        """True when the fused kernels compute exactly this surrogate (built-in class, spiking, float params)."""
        return (self.kernel_id >= 0 and self.spiking and type(self).grad is KERNEL_GRADS.get(self.kernel_id)
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in self.params))

    def kernel_spec(self) -> Optional[Tuple[int, Tuple[float, float]]]:
        """(kernel_id, kernel_params()) when fusable(), else None. Cached: every call of a neuron asks for
        it, and assigning any attribute (alpha, spiking, ...) drops the cached value."""
        spec = self.__dict__.get("_kernel_spec", _UNSET)
        if spec is _UNSET:
            spec = (self.kernel_id, self.kernel_params()) if self.fusable() else None
            self.__dict__["_kernel_spec"] = spec
        return spec

    def __setattr__(self, name, value) -> None:
        super().__setattr__(name, value)
        self.__dict__.pop("_kernel_spec", None)

    # -- the surrogate ---------------------------------------------------------------------------------
    @classmethod
    def spiking_function(cls, x: torch.Tensor, *params, **kwargs):
        """Heaviside forward, ``grad_output * cls.grad(x, *params)`` backward. Parameters may be passed by
        position or by name (SpikingJelly 2.0 passes them by name)."""
        if kwargs:
            params = params + tuple(kwargs[k] for k in cls._param_names[len(params):])
        return _spike(x, cls.grad, params)

    @staticmethod
    def grad(x: torch.Tensor, *params) -> torch.Tensor:
        raise NotImplementedError("a surrogate defines grad(x, *params) or its own spiking_function")

    @staticmethod
    def primitive_function(x: torch.Tensor, *params) -> torch.Tensor:
        raise NotImplementedError

    @classmethod
    def backward(cls, grad_output: torch.Tensor, x: torch.Tensor, *params) -> torch.Tensor:
        """``grad_output`` times the surrogate derivative at ``x`` (SpikingJelly's static ``backward``)."""
        return grad_output * cls.grad(x, *params)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.spiking:
            return self.spiking_function(x, *self.params)
        return self.primitive_function(x, *self.params)

    def extra_repr(self) -> str:
        return ", ".join([f"{k}={getattr(self, k)}" for k in self._param_names] + [f"spiking={self.spiking}"])


def check_manual_grad(primitive_function, spiking_function, *args, **kwargs) -> float:
    """Compare a hand-written surrogate gradient with autograd's derivative of the primitive function on
    x in [-2, 2): prints both, the largest absolute difference and where it occurs (as SpikingJelly does), and
    returns that largest difference.

    Example: ``check_manual_grad(surrogate.ATan.primitive_function, surrogate.atan.apply, alpha=3.0)``.
    """
    for name, fn in (("primitive_function", primitive_function), ("spiking_function", spiking_function)):
        if not callable(fn):
            raise TypeError(f"check_manual_grad: {name} must be callable, but got {type(fn).__name__}.")
    x = torch.arange(-2.0, 2.0, 32 / 8192).requires_grad_(True)
    primitive_function(x, *args, **kwargs).sum().backward()
    auto = x.grad.clone()
    x.grad = None
    spiking_args, spiking_kwargs = args, kwargs
    owner = getattr(spiking_function, "__self__", None)
    if kwargs and isinstance(owner, type) and issubclass(owner, torch.autograd.Function):
        # Function.apply rejects keyword arguments in torch 2.11 (2.13 binds them): bind them to forward's positions
        spiking_args, spiking_kwargs = inspect.signature(owner.forward).bind(x, *args, **kwargs).args[1:], {}
    spiking_function(x, *spiking_args, **spiking_kwargs).sum().backward()
    manual = x.grad.clone()
    print("Surrogate gradient comparison: auto=", auto, "manual=", manual)
    err = (manual - auto).abs()
    i = int(err.argmax())
    print("Surrogate gradient maximum error=", err[i], "at x=", x[i].detach())
    print("Surrogate gradient values: auto=", auto[i], "manual=", manual[i])
    return float(err[i])


def plot_surrogate_function(surrogate_function) -> None:
    """Plot Heaviside, the primitive function and the surrogate gradient of ``surrogate_function`` on
    [-2, 2] and save ``./<ClassName>.pdf`` and ``./<ClassName>.svg`` (as SpikingJelly does), then show the
    figure. Needs matplotlib; uses the ``scienceplots`` style when that is installed."""
    if not isinstance(surrogate_function, SurrogateFunctionBase):
        raise TypeError("plot_surrogate_function: surrogate_function must be a SurrogateFunctionBase instance, "
                        f"but got {type(surrogate_function).__name__}.")
    try:
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError("plot_surrogate_function needs matplotlib: pip install matplotlib") from e
    try:
        import scienceplots  # noqa: F401  (registers the 'science' styles)
        plt.style.use(["science", "muted", "grid"])
    except (ImportError, OSError):
        pass
    x = torch.arange(-2.5, 2.5, 0.001)
    fig = plt.figure(dpi=200)
    plt.plot(x, heaviside(x), label="Heaviside", linestyle="-.")
    was_spiking = surrogate_function.spiking
    try:
        surrogate_function.set_spiking_mode(False)
        with torch.no_grad():
            plt.plot(x, surrogate_function(x), label="Primitive")
        surrogate_function.set_spiking_mode(True)
        xg = x.clone().requires_grad_(True)
        surrogate_function(xg).sum().backward()
        plt.plot(x, xg.grad, label="Gradient")
    finally:
        surrogate_function.set_spiking_mode(was_spiking)
    name = type(surrogate_function).__name__
    plt.xlim(-2, 2)
    plt.legend()
    plt.title(f"{name} surrogate function")
    plt.xlabel("Input")
    plt.ylabel("Output")
    plt.grid(linestyle="--")
    for ext in ("pdf", "svg"):
        fd, tmp = tempfile.mkstemp(dir=".", prefix=f".{name}", suffix=f".{ext}")
        os.close(fd)
        try:
            fig.savefig(tmp, bbox_inches="tight", format=ext)
            os.replace(tmp, f"./{name}.{ext}")
        except BaseException:
            os.unlink(tmp)
            raise
    plt.show()
