"""Surrogate spike functions: Heaviside forward, a smooth function's derivative backward.

Every public name of SpikingJelly 2.0.0's ``activation_based.surrogate``, with its parameters and defaults:

* ``base``: :func:`heaviside`, :class:`SurrogateFunctionBase`, :func:`check_manual_grad`,
  :func:`plot_surrogate_function`;
* ``builtins``: the 14 surrogates the fused neuron kernels compute inline (``KERNEL_IDS``; each has
  ``kernel_id``, ``kernel_params()``, ``fusable()``, ``kernel_spec()``);
* ``extra``: SquarewaveFourierSeries, FakeNumericalGradient, DeterministicPass, MultiLevelSpikeCount, PoissonPass
  (not fused: neurons using them run the pure-PyTorch path);
* ``functions``: the lowercase ``torch.autograd.Function``s (``sigmoid.apply(x, alpha)``, ...) and the
  ``*_backward`` functions.
"""
from . import base, builtins, extra, functions
from .base import *
from .._errors import ArgumentError
from .base import KERNEL_GRADS
from .builtins import *
from .builtins import _BUILTINS
from .extra import *
from .functions import *

__all__ = base.__all__ + builtins.__all__ + extra.__all__ + functions.__all__
