"""Spiking recurrent networks (SpikingJelly 2.0.0's ``activation_based.rnn``): LSTM, GRU and vanilla RNN cells
whose gates are surrogate spike functions, stacked into multi-layer (optionally bidirectional) networks.

Shapes follow ``torch.nn.LSTM`` with ``batch_first=False``: x [T, N, input_size]; the stacked networks take and
return states [num_layers * directions, N, hidden_size] (a tuple (h, c) of them for the LSTM). Parameter names
(``cells.0.linear_ih.weight``, ...) and initialisation (uniform in +-1/sqrt(hidden_size)) are SpikingJelly's.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import surrogate
from ._errors import ArgumentError

__all__ = ["directional_rnn_cell_forward", "bidirectional_rnn_cell_forward", "SpikingRNNCellBase", "SpikingRNNBase",
           "SpikingLSTMCell", "SpikingLSTM", "SpikingVanillaRNNCell", "SpikingVanillaRNN", "SpikingGRUCell",
           "SpikingGRU"]


def _check_states(states: torch.Tensor, name: str) -> None:
    if not isinstance(states, torch.Tensor) or states.dim() not in (2, 3):
        raise ValueError(f"{name} must be a 2-D tensor [N, hidden] (one state) or 3-D [states, N, hidden], but got "
                         f"{tuple(states.shape) if isinstance(states, torch.Tensor) else type(states).__name__}.")


def directional_rnn_cell_forward(cell: nn.Module, x: torch.Tensor, states: torch.Tensor):
    """Run ``cell`` over x [T, N, *] from ``states``; returns (the first state of every step [T, N, hidden],
    the final state(s))."""
    _check_states(states, "states")
    one = states.dim() == 2
    out = []
    for t in range(x.shape[0]):
        states = cell(x[t], states)
        out.append(states if one else states[0])
    return torch.stack(out), states


def bidirectional_rnn_cell_forward(cell: nn.Module, cell_reverse: nn.Module, x: torch.Tensor, states: torch.Tensor,
                                   states_reverse: torch.Tensor):
    """``cell`` forward and ``cell_reverse`` backward in time over x [T, N, *]; returns (both outputs concatenated
    on the last dim [T, N, 2 hidden], final states, final reverse states)."""
    _check_states(states, "states")
    _check_states(states_reverse, "states_reverse")
    if states.dim() != states_reverse.dim():
        raise ValueError(f"states and states_reverse must have the same rank, but got {states.dim()} and "
                         f"{states_reverse.dim()}.")
    one = states.dim() == 2
    T = x.shape[0]
    out, out_r = [], []
    for t in range(T):
        states = cell(x[t], states)
        states_reverse = cell_reverse(x[T - 1 - t], states_reverse)
        out.append(states if one else states[0])
        out_r.append(states_reverse if one else states_reverse[0])
    return torch.cat((torch.stack(out), torch.stack(out_r).flip(0)), dim=-1), states, states_reverse


def _check_same_mode(sg1, sg2) -> None:
    if sg2 is not None and sg1.spiking != sg2.spiking:
        raise ArgumentError("surrogate_function1 and surrogate_function2 must both be spiking or both not "
                               f"(got spiking={sg1.spiking} and {sg2.spiking}).")


class SpikingRNNCellBase(nn.Module):
    """A cell with ``linear_ih`` (input -> gates) and ``linear_hh`` (hidden -> gates)."""

    def __init__(self, input_size: int, hidden_size: int, bias=True):
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias

    def reset_parameters(self):
        """Every parameter uniform in [-1/sqrt(hidden_size), 1/sqrt(hidden_size)] (as torch's RNNs)."""
        bound = math.sqrt(1 / self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def weight_ih(self):
        return self.linear_ih.weight

    def weight_hh(self):
        return self.linear_hh.weight

    def bias_ih(self):
        return self.linear_ih.bias

    def bias_hh(self):
        return self.linear_hh.bias

    def _zeros(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros((x.shape[0], self.hidden_size), dtype=x.dtype, device=x.device)


class SpikingRNNBase(nn.Module):
    """``num_layers`` cells (``base_cell()``) stacked, each direction's in ``cells`` / ``cells_reverse``;
    dropout ``dropout_p`` between layers (training only), the same mask at every step when
    ``invariant_dropout_mask``. Extra positional/keyword arguments go to every cell."""

    def __init__(self, input_size, hidden_size, num_layers, bias=True, dropout_p=0, invariant_dropout_mask=False,
                 bidirectional=False, *args, **kwargs):
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.dropout_p = dropout_p
        self.invariant_dropout_mask = invariant_dropout_mask
        self.bidirectional = bidirectional
        if bidirectional:
            self.cells, self.cells_reverse = self.create_cells(*args, **kwargs)
        else:
            self.cells = self.create_cells(*args, **kwargs)

    def create_cells(self, *args, **kwargs):
        cell = self.base_cell()
        sizes = [self.input_size] + [self.hidden_size * (2 if self.bidirectional else 1)] * (self.num_layers - 1)
        make = lambda: nn.Sequential(*(cell(n, self.hidden_size, self.bias, *args, **kwargs) for n in sizes))  # noqa: E731
        return (make(), make()) if self.bidirectional else make()

    @staticmethod
    def base_cell():
        raise NotImplementedError

    @staticmethod
    def states_num():
        raise NotImplementedError

    def forward(self, x: torch.Tensor, states=None):
        """x [T, N, input_size]; states None (zeros), a tensor [L*D, N, hidden] (one state per cell) or a tuple
        of them (the LSTM's (h, c)). Returns (y [T, N, D*hidden], final states in the same form)."""
        n_states = self.states_num()
        dirs = 2 if self.bidirectional else 1
        cells_n = self.num_layers * dirs
        N = x.shape[1]
        if states is None:
            s = x.new_zeros(n_states, cells_n, N, self.hidden_size)
        elif isinstance(states, tuple):
            s = torch.stack(states)
        elif isinstance(states, torch.Tensor) and states.dim() == 3:
            s = states.unsqueeze(0)
        else:
            raise TypeError(f"states must be None, a 3-D torch.Tensor or a tuple of tensors, but got "
                            f"{type(states).__name__}.")
        if s.dim() != 4 or s.shape[0] != n_states or s.shape[1] != cells_n:
            raise ValueError(f"states must have shape [{n_states}, {cells_n}, batch_size, hidden_size], but got "
                             f"{tuple(s.shape)}.")
        masks = None
        if self.training and self.dropout_p > 0 and self.invariant_dropout_mask and self.num_layers > 1:
            masks = F.dropout(x.new_ones(self.num_layers - 1, N, self.hidden_size * dirs), p=self.dropout_p,
                              training=True)
        out_states = torch.empty_like(s)
        pick = (lambda t: t[0]) if n_states == 1 else (lambda t: t)
        y = x
        for i in range(self.num_layers):
            if self.bidirectional:
                j = i + self.num_layers
                y, final, final_r = bidirectional_rnn_cell_forward(self.cells[i], self.cells_reverse[i], y,
                                                                   pick(s[:, i]), pick(s[:, j]))
                out_states[:, j] = _as_states(final_r, n_states)
            else:
                y, final = directional_rnn_cell_forward(self.cells[i], y, pick(s[:, i]))
            out_states[:, i] = _as_states(final, n_states)
            if self.training and self.dropout_p > 0 and i < self.num_layers - 1:
                y = F.dropout(y, p=self.dropout_p, training=True) if masks is None else y * masks[i]
        return (y, out_states[0]) if n_states == 1 else (y, tuple(out_states))


def _as_states(final, n_states: int) -> torch.Tensor:
    if n_states > 1 and isinstance(final, (tuple, list)):
        final = torch.stack(final)
    return final.unsqueeze(0) if n_states == 1 else final


class SpikingLSTMCell(SpikingRNNCellBase):
    """LSTM cell with spiking gates: i, f, o = sg1(.), g = sg2(.) (sg1 when None); c' = f c + i g, clamped at 1
    without a gradient through the clamp; h' = o c'. ``forward(x, hc=None) -> (h', c')``."""

    def __init__(self, input_size: int, hidden_size: int, bias=True, surrogate_function1=surrogate.Erf(),
                 surrogate_function2=None):
        super().__init__(input_size, hidden_size, bias)
        self.linear_ih = nn.Linear(input_size, 4 * hidden_size, bias=bias)
        self.linear_hh = nn.Linear(hidden_size, 4 * hidden_size, bias=bias)
        _check_same_mode(surrogate_function1, surrogate_function2)
        self.surrogate_function1 = surrogate_function1
        self.surrogate_function2 = surrogate_function2
        self.reset_parameters()

    def forward(self, x: torch.Tensor, hc: Optional[Tuple[torch.Tensor, torch.Tensor]] = None):
        h, c = (self._zeros(x), self._zeros(x)) if hc is None else (hc[0], hc[1])
        z = self.linear_ih(x) + self.linear_hh(h)
        sg1 = self.surrogate_function1
        if self.surrogate_function2 is None:
            i, f, g, o = torch.split(sg1(z), self.hidden_size, dim=1)
        else:
            i, f, g, o = torch.split(z, self.hidden_size, dim=1)
            i, f, g, o = sg1(i), sg1(f), self.surrogate_function2(g), sg1(o)
        c = c * f + i * g
        with torch.no_grad():
            torch.clamp_max_(c, 1.0)
        return c * o, c


class SpikingLSTM(SpikingRNNBase):
    def __init__(self, input_size, hidden_size, num_layers, bias=True, dropout_p=0, invariant_dropout_mask=False,
                 bidirectional=False, surrogate_function1=surrogate.Erf(), surrogate_function2=None):
        super().__init__(input_size, hidden_size, num_layers, bias, dropout_p, invariant_dropout_mask, bidirectional,
                         surrogate_function1, surrogate_function2)

    @staticmethod
    def base_cell():
        return SpikingLSTMCell

    @staticmethod
    def states_num():
        return 2


class SpikingVanillaRNNCell(SpikingRNNCellBase):
    """h' = sg(W_ih x + W_hh h) (spikes)."""

    def __init__(self, input_size: int, hidden_size: int, bias=True, surrogate_function=surrogate.Erf()):
        super().__init__(input_size, hidden_size, bias)
        self.linear_ih = nn.Linear(input_size, hidden_size, bias=bias)
        self.linear_hh = nn.Linear(hidden_size, hidden_size, bias=bias)
        self.surrogate_function = surrogate_function
        self.reset_parameters()

    def forward(self, x: torch.Tensor, h: Optional[torch.Tensor] = None):
        h = self._zeros(x) if h is None else h
        return self.surrogate_function(self.linear_ih(x) + self.linear_hh(h))


class SpikingVanillaRNN(SpikingRNNBase):
    def __init__(self, input_size, hidden_size, num_layers, bias=True, dropout_p=0, invariant_dropout_mask=False,
                 bidirectional=False, surrogate_function=surrogate.Erf()):
        super().__init__(input_size, hidden_size, num_layers, bias, dropout_p, invariant_dropout_mask, bidirectional,
                         surrogate_function)

    @staticmethod
    def base_cell():
        return SpikingVanillaRNNCell

    @staticmethod
    def states_num():
        return 1


class SpikingGRUCell(SpikingRNNCellBase):
    """GRU cell with spiking gates: r, z = sg1(.), n = sg2(W_in x + r W_hn h) (sg1 when None);
    h' = (1 - z) n + z h."""

    def __init__(self, input_size: int, hidden_size: int, bias=True, surrogate_function1=surrogate.Erf(),
                 surrogate_function2=None):
        super().__init__(input_size, hidden_size, bias)
        self.linear_ih = nn.Linear(input_size, 3 * hidden_size, bias=bias)
        self.linear_hh = nn.Linear(hidden_size, 3 * hidden_size, bias=bias)
        _check_same_mode(surrogate_function1, surrogate_function2)
        self.surrogate_function1 = surrogate_function1
        self.surrogate_function2 = surrogate_function2
        self.reset_parameters()

    def forward(self, x: torch.Tensor, h: Optional[torch.Tensor] = None):
        h = self._zeros(x) if h is None else h
        ih = torch.split(self.linear_ih(x), self.hidden_size, dim=1)
        hh = torch.split(self.linear_hh(h), self.hidden_size, dim=1)
        r = self.surrogate_function1(ih[0] + hh[0])
        z = self.surrogate_function1(ih[1] + hh[1])
        sg_n = self.surrogate_function1 if self.surrogate_function2 is None else self.surrogate_function2
        n = sg_n(ih[2] + r * hh[2])
        return (1.0 - z) * n + z * h


class SpikingGRU(SpikingRNNBase):
    def __init__(self, input_size, hidden_size, num_layers, bias=True, dropout_p=0, invariant_dropout_mask=False,
                 bidirectional=False, surrogate_function1=surrogate.Erf(), surrogate_function2=None):
        super().__init__(input_size, hidden_size, num_layers, bias, dropout_p, invariant_dropout_mask, bidirectional,
                         surrogate_function1, surrogate_function2)

    @staticmethod
    def base_cell():
        return SpikingGRUCell

    @staticmethod
    def states_num():
        return 1
