"""SpikeDHS (differentiable hierarchical and surrogate gradient search for spiking neural networks) with
SpikingJelly 2.0.0's names, arguments and state_dict keys.

Pieces: the ``DSpike`` surrogate (gradient ``alpha / (2 tanh(alpha/2)) * sech^2(alpha x)`` on |x| <= 0.5, else 0)
and its autograd function ``dSpike``; ``save_v_LIFNode``, a LIF neuron that records the mean of ``H - v_threshold``
of its last step (``v_before_spike``); spiking conv / linear / pooling blocks; the searched conv blocks
``SearchSpikingConv2d_stem``/``_cell`` with differentiable gradient search (DGS: three copies of the block whose
DSpike ``alpha`` differ by ``dgs_step``, mixed by softmax weights ``dgs_alpha``); the searched ``Cell``, the
feature network ``newFeature`` (with an auxiliary CIFAR head) and ``SpikeDHS`` itself.

SpikeDHS repeats an image [N, C, H, W] over 6 steps; set the network to multi-step mode first
(``functional.set_step_mode(net, 'm')``), as in SpikingJelly. It returns ``(logits, logits_aux)`` in training
(``logits_aux`` from the auxiliary head) and ``(logits, None)`` in eval mode.
"""
from __future__ import annotations

from collections import namedtuple
from math import tanh

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .. import layer
from .._apply import fast_apply
from .._errors import ArgumentError
from ..neuron import LIFNode
from ..surrogate import SurrogateFunctionBase, heaviside

__all__ = ["DSpike", "save_v_LIFNode", "SpikingConv2d", "SpikingLinear", "SpikingAvgPool2d",
           "SpikingAdaptiveAvgPool2d", "SearchSpikingConv2d_stem", "SearchSpikingConv2d_cell"]


def network_layer_to_space(net_arch):
    """One-hot search-space encoding of a path of levels ``net_arch`` (level i per layer): an array
    [layers, 4, 3] whose [i, level, k] is 1 where k says how the level changed (0 up, 1 same, 2 down)."""
    space = np.zeros((len(net_arch), 4, 3))
    prev = None
    for i, level in enumerate(net_arch):
        move = 0 if prev is None else {prev + 1: 0, prev: 1, prev - 1: 2}[level]
        space[i][level][move] = 1
        prev = level
    return space


Genotype = namedtuple("Genotype_2D", "cell cell_concat")
PRIMITIVES = ["skip_connect", "snn_b3", "snn_b5"]
OPS = {
    "skip_connect": lambda Cin, Cout, stride, signal: (SpikingConv2d(Cin, Cout, stride=stride, padding=1,
                                                                     spiking=False) if signal == 1 else nn.Identity()),
    "snn_b3": lambda Cin, Cout, stride, signal: SpikingConv2d(Cin, Cout, kernel_size=3, stride=stride, padding=1,
                                                              spiking=False),
    "snn_b5": lambda Cin, Cout, stride, signal: SpikingConv2d(Cin, Cout, kernel_size=3, stride=stride, padding=1,
                                                              spiking=False),
}


def _dspike_grad(x: Tensor, alpha: float) -> Tensor:
    scale = alpha / (2.0 * tanh(alpha / 2.0))
    return (scale / torch.cosh(alpha * x).square()).masked_fill(x.abs() > 0.5, 0.0)


def dSpike_backward(grad_output: Tensor, x: Tensor, alpha: float):
    """Gradients of ``dSpike.apply(x, alpha)`` with respect to (x, alpha): alpha gets none."""
    return grad_output * _dspike_grad(x, alpha), None


class dSpike(torch.autograd.Function):
    """Heaviside forward, DSpike surrogate gradient backward."""

    generate_vmap_rule = True  # PyTorch operations only (setup_context style: torch.func transforms apply it)

    @staticmethod
    def forward(x: Tensor, alpha: float) -> Tensor:
        return heaviside(x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, ctx.alpha = inputs
        ctx.save_for_backward(x)

    @staticmethod
    def backward(ctx, grad_output):
        return dSpike_backward(grad_output, ctx.saved_tensors[0], ctx.alpha)


_dspike = fast_apply(dSpike)


class DSpike(SurrogateFunctionBase):
    """The DSpike surrogate; ``alpha`` > 0 sets its sharpness. With ``spiking=False`` it returns the smooth
    function itself, ``0.5 + tanh(alpha x) / (2 tanh(alpha/2))`` clamped to [0, 1] outside |x| <= 0.5."""

    def __init__(self, alpha: float = 3, spiking=True):
        if not alpha > 0:
            raise ArgumentError(f"DSpike: alpha must be larger than 0, got alpha={alpha!r}")
        super().__init__(spiking=spiking, alpha=alpha)

    @classmethod
    def spiking_function(cls, x: Tensor, alpha: float):
        return _dspike(x, alpha)

    @staticmethod
    def grad(x: Tensor, alpha: float) -> Tensor:
        return _dspike_grad(x, alpha)

    @staticmethod
    def primitive_function(x: Tensor, alpha: float) -> Tensor:
        inner = 0.5 + torch.tanh(alpha * x) / (2.0 * tanh(alpha / 2.0))
        return torch.where(x > 0.5, torch.ones_like(x), torch.where(x < -0.5, torch.zeros_like(x), inner))


class save_v_LIFNode(LIFNode):
    """LIFNode that also keeps ``v_before_spike``: the mean over all neurons of ``H - v_threshold`` at the last
    step it ran (with ``store_v_seq``, ``v_seq`` holds that mean for every step). Runs the PyTorch path."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.v_before_spike = None

    def _observed_step(self, x: Tensor):
        self.neuronal_charge(x)
        observation = (self.v - self.v_threshold).mean()
        spike = self.neuronal_fire()
        self.neuronal_reset(spike)
        return spike, observation

    def single_step_forward(self, x: Tensor) -> Tensor:
        self._check_input(x, 1)
        self.v = self._initial_v(x, x.shape)
        spike, self.v_before_spike = self._observed_step(x)
        return spike

    def multi_step_forward(self, x_seq: Tensor) -> Tensor:
        self._check_input(x_seq, 2)
        self.v = self._initial_v(x_seq, x_seq.shape[1:])
        spikes, observations = zip(*[self._observed_step(x) for x in x_seq])
        self.v_before_spike = observations[-1]
        if self.store_v_seq:
            self.v_seq = torch.stack(observations)
        return torch.stack(spikes)


def getSpikingNode(v_threshold=0.5):
    """SpikeDHS's neuron: LIF tau=1.25, decay_input=False, detach_reset, DSpike surrogate."""
    return LIFNode(tau=1.25, decay_input=False, v_threshold=v_threshold, detach_reset=True, surrogate_function=DSpike())


def get_save_v_SpikingNode(v_threshold=0.5):
    """``getSpikingNode``'s neuron as a ``save_v_LIFNode``."""
    return save_v_LIFNode(tau=1.25, decay_input=False, v_threshold=v_threshold, detach_reset=True,
                          surrogate_function=DSpike())


class SpikingConv2d(nn.Module):
    """Conv2d -> BatchNorm2d (-> SpikeDHS neuron when ``spiking``). ``b`` is unused (kept for the signature)."""

    def __init__(self, input_c, output_c, kernel_size=3, stride=1, padding=1, b=3, spiking=True, v_threshold=0.5):
        super().__init__()
        self.conv = layer.Conv2d(input_c, output_c, kernel_size=kernel_size, stride=stride, padding=padding)
        self.bn = layer.BatchNorm2d(output_c)
        self.spiking = spiking
        if spiking:
            self.spike = getSpikingNode(v_threshold=v_threshold)

    def forward(self, x):
        x = self.bn(self.conv(x))
        return self.spike(x) if self.spiking else x


class _DGSMixin:
    """Differentiable gradient search over three copies of a block: ``_m`` (the block), ``_s`` and ``_b``
    (DSpike alpha lowered / raised by ``dgs_step``), mixed by ``softmax(dgs_alpha)`` while ``is_DGS``."""

    _branch_layers = ()  # names of the conv/bn pairs, without the _m/_s/_b suffix

    def _init_dgs(self, reference: Tensor) -> None:
        self.spike_m = get_save_v_SpikingNode()
        self.spike_b = get_save_v_SpikingNode()
        self.spike_s = get_save_v_SpikingNode()
        self.is_DGS = False
        self.dgs_alpha = nn.Parameter(reference.new_full((3,), 0.001))
        self.dgs_step = 0.2

    def dgs_init_stage(self):
        """Start a search: copy the main branch into the other two and set their surrogates' alpha."""
        self.is_DGS = True
        for name in self._branch_layers:
            main = getattr(self, name + "_m").state_dict()
            getattr(self, name + "_s").load_state_dict(main)
            getattr(self, name + "_b").load_state_dict(main)
        alpha = self.spike_m.surrogate_function.alpha
        self.spike_s.surrogate_function.alpha = alpha - self.dgs_step
        self.spike_b.surrogate_function.alpha = alpha + self.dgs_step
        with torch.no_grad():
            self.dgs_alpha.fill_(0.001)
        for value in self.parameters():
            value.requires_grad_(True)

    def dgs_finish_stage(self, dgs_direction):
        """End a search: move the main surrogate's alpha by -dgs_step, 0 or +dgs_step (direction 0, 1, 2),
        not below 0.2."""
        self.is_DGS = False
        self.spike_m.surrogate_function.alpha += (-self.dgs_step, 0, self.dgs_step)[dgs_direction]
        if self.spike_m.surrogate_function.alpha < 0.2:
            self.spike_m.surrogate_function.alpha = 0.2

    def _mix(self, branch) -> Tensor:
        """``branch(suffix)`` is the pre-activation of one copy; returns the spikes (mixed while searching)."""
        if not self.is_DGS:
            return self.spike_m(branch("m"))
        w = F.softmax(self.dgs_alpha, dim=0)
        return (w[0] * self.spike_s(branch("s")) + w[1] * self.spike_m(branch("m"))
                + w[2] * self.spike_b(branch("b")))


class SearchSpikingConv2d_stem(_DGSMixin, nn.Module):
    """Searched stem: conv -> BN -> save_v neuron, in three DGS copies (``conv_m/_b/_s``, ``bn_m/_b/_s``)."""

    _branch_layers = ("conv", "bn")

    def __init__(self, input_c, output_c, kernel_size=3, stride=1, padding=1, b=3, spiking=True, v_threshold=0.5):
        super().__init__()
        for s in ("m", "b", "s"):
            setattr(self, f"conv_{s}", layer.Conv2d(input_c, output_c, kernel_size=kernel_size, stride=stride,
                                                    padding=padding))
        for s in ("m", "b", "s"):
            setattr(self, f"bn_{s}", layer.BatchNorm2d(output_c))
        self._init_dgs(self.conv_m.weight)

    def forward(self, x):
        return self._mix(lambda s: getattr(self, f"bn_{s}")(getattr(self, f"conv_{s}")(x)))


class SearchSpikingConv2d_cell(_DGSMixin, nn.Module):
    """Searched cell operation: two conv -> BN paths (inputs x1, x2) summed into one save_v neuron, in three
    DGS copies. ``io_c`` = [[in1, out1, primitive1], [in2, out2, primitive2]]."""

    _branch_layers = ("conv1", "bn1", "conv2", "bn2")

    def __init__(self, io_c, kernel_size=3, stride=1, padding=1, b=3, spiking=True, v_threshold=0.5):
        super().__init__()
        (in1, out1, _), (in2, out2, _) = io_c
        for i, (cin, cout) in ((1, (in1, out1)), (2, (in2, out2))):
            for s in ("m", "b", "s"):
                setattr(self, f"conv{i}_{s}", layer.Conv2d(cin, cout, kernel_size=kernel_size, stride=stride,
                                                           padding=padding))
            for s in ("m", "b", "s"):
                setattr(self, f"bn{i}_{s}", layer.BatchNorm2d(cout))
        self._init_dgs(self.conv1_m.weight)

    def forward(self, x1, x2):
        def branch(s):
            return (getattr(self, f"bn1_{s}")(getattr(self, f"conv1_{s}")(x1))
                    + getattr(self, f"bn2_{s}")(getattr(self, f"conv2_{s}")(x2)))
        return self._mix(branch)


class SpikingLinear(nn.Module):
    """Linear -> BatchNorm1d over the folded [T*N, F] batch (-> SpikeDHS neuron when ``spiking``)."""

    def __init__(self, input_c, output_c, spiking=True):
        super().__init__()
        self.linear = layer.Linear(input_c, output_c)
        self.bn = layer.SeqToANNContainer(nn.BatchNorm1d(output_c))
        self.spiking = spiking
        if spiking:
            self.spike = getSpikingNode()

    def forward(self, x):
        x = self.bn(self.linear(x))
        return self.spike(x) if self.spiking else x


class SpikingAvgPool2d(nn.Module):
    """Average pooling (count_include_pad=False) over [T, N, C, H, W], then a SpikeDHS neuron."""

    def __init__(self, kernel_size=5, stride=3, padding=0, b=3, spiking=True):
        super().__init__()
        self.pooling = layer.SeqToANNContainer(nn.AvgPool2d(kernel_size=kernel_size, stride=stride, padding=padding,
                                                            count_include_pad=False))
        self.spike = getSpikingNode()

    def forward(self, x):
        return self.spike(self.pooling(x))


class SpikingAdaptiveAvgPool2d(nn.Module):
    """Adaptive average pooling to ``dimension`` over [T, N, C, H, W], then a SpikeDHS neuron."""

    def __init__(self, dimension, b=3, spiking=True):
        super().__init__()
        self.pooling = layer.SeqToANNContainer(nn.AdaptiveAvgPool2d(dimension))
        self.spike = getSpikingNode()

    def forward(self, x):
        return self.spike(self.pooling(x))


class Nearest(nn.Module):
    """Nearest-neighbour resize of [N, C, H, W] to ``shape`` (H, W)."""

    def __init__(self, shape) -> None:
        super().__init__()
        self._shape = shape

    def forward(self, x):
        return F.interpolate(x, self._shape, mode="nearest")



def _resize(x: Tensor, size) -> Tensor:
    """Nearest-neighbour resize of the spatial axes of [T, N, C, H, W]."""
    return layer.SeqToANNContainer(Nearest(list(size)))(x)


class Cell(nn.Module):
    """Searched SpikeDHS cell: three ``SearchSpikingConv2d_cell`` operations build nodes from the previous two
    cells' outputs (resized to this cell's level) and from each other; the output concatenates the last
    ``block_multiplier`` nodes on the channel axis. ``downup_sample`` -1 / 0 / 1 halves / keeps / doubles the
    resolution of the previous cell's output. Returns ``(prev_input, output)``."""

    def __init__(self, steps, block_multiplier, prev_prev_fmultiplier, prev_filter_multiplier, cell_arch,
                 network_arch, filter_multiplier, downup_sample, args=None):
        super().__init__()
        self.C_in = block_multiplier * filter_multiplier
        self.C_out = filter_multiplier
        self.C_prev = int(block_multiplier * prev_filter_multiplier)
        self.C_prev_prev = int(block_multiplier * prev_prev_fmultiplier)
        self.downup_sample = downup_sample
        self._steps = steps
        self.block_multiplier = block_multiplier
        self._ops = nn.ModuleList()
        if downup_sample in (-1, 1):
            self.scale = 0.5 if downup_sample == -1 else 2
        # each column sorted on its own, as SpikingJelly does
        self.cell_arch = torch.sort(torch.as_tensor(cell_arch, device="cpu"), dim=0)[0].to(torch.uint8)
        pending = []
        for i, (node, primitive) in enumerate(self.cell_arch.tolist()):
            c_in = self.C_prev_prev if node in (0, 2, 5) else self.C_prev if node in (1, 3, 6) else self.C_out
            pending.append([c_in, self.C_out, PRIMITIVES[primitive]])
            if i % 2 == 1:
                self._ops.append(SearchSpikingConv2d_cell(io_c=pending))
                pending = []
        self.spikes = nn.ModuleList([getSpikingNode() for _ in range(self._steps)])

    def scale_dimension(self, dim, scale):
        return int((float(dim) - 1.0) * scale + 1.0) if dim % 2 == 1 else int(float(dim) * scale)

    def forward(self, prev_prev_input, prev_input):
        s0, s1 = prev_prev_input, prev_input
        if self.downup_sample != 0:
            s1 = _resize(s1, [self.scale_dimension(s1.shape[d], self.scale) for d in (3, 4)])
        if s0.shape[3:5] != s1.shape[3:5]:
            s0 = _resize(s0, s1.shape[3:5])
        states = [s0, s1]
        states.append(self._ops[0](s0, s1))
        states.append(self._ops[1](s0, s1))
        states.append(self._ops[2](states[2], states[3]))
        return prev_input, torch.cat(states[-self.block_multiplier:], dim=2)


class AuxiliaryHeadCIFAR(nn.Module):
    """Auxiliary classifier on a [T, N, C, H, W] feature map (H, W >= 5): spiking 5/3 average pool, 1x1 and 2x2
    spiking convs, linear + BN read-out (no neuron)."""

    def __init__(self, C, num_classes):
        super().__init__()
        self.pooling = SpikingAvgPool2d(kernel_size=5, stride=3, padding=0)
        self.conv1 = SpikingConv2d(C, 128, 1, padding=0, b=3)
        self.conv2 = SpikingConv2d(128, 768, 2, padding=0, b=3)
        self.classifier = SpikingLinear(768, num_classes, spiking=False)

    def forward(self, x):
        x = self.conv2(self.conv1(self.pooling(x)))
        return self.classifier(x.view(*x.shape[:2], -1))


_FILTER_SCALE = {0: 1, 1: 2, 2: 4, 3: 8}


class newFeature(nn.Module):
    """SpikeDHS's feature network: a searched stem and ``args.fea_num_layers`` cells along the level path
    ``network_arch`` ([layers, 4, 3], see ``network_layer_to_space``), cell structure ``cell_arch``. ``args``
    needs ``fea_step``, ``fea_num_layers``, ``fea_block_multiplier``, ``fea_filter_multiplier``. In training
    the output of cell 5 also feeds an auxiliary head (576 channels). Returns ``(features, logits_aux or None)``."""

    def __init__(self, frame_rate, network_arch, cell_arch, cell=Cell, args=None):
        super().__init__()
        self.args = args
        self.cells = nn.ModuleList()
        self.network_arch = torch.as_tensor(network_arch, device="cpu")  # architecture codes, not weights
        self.cell_arch = torch.as_tensor(cell_arch, device="cpu")
        self._step = args.fea_step
        self._num_layers = args.fea_num_layers
        self._block_multiplier = args.fea_block_multiplier
        self._filter_multiplier = args.fea_filter_multiplier
        f = self._filter_multiplier
        self.stem0 = SearchSpikingConv2d_stem(frame_rate, int(f) * self._block_multiplier, kernel_size=3, stride=1,
                                              padding=1, b=3)
        self.auxiliary_head = AuxiliaryHeadCIFAR(576, 100)
        levels = [int(torch.argmax(self.network_arch[i].sum(dim=1))) for i in range(self._num_layers)]
        for i in range(self._num_layers):
            if i == 0:
                downup, prev_prev, prev = -levels[0], f, f
            else:
                downup = int(torch.argmax(self.network_arch[i].sum(dim=0))) - 1
                prev = int(f * _FILTER_SCALE[levels[i - 1]])
                prev_prev = f if i == 1 else int(f * _FILTER_SCALE[levels[i - 2]])
            self.cells.append(cell(self._step, self._block_multiplier, prev_prev, prev, self.cell_arch,
                                   self.network_arch[i], int(f * _FILTER_SCALE[levels[i]]), downup, self.args))

    def forward(self, x):
        stem = self.stem0(x)
        out, logits_aux = (stem, stem), None
        for i, cell in enumerate(self.cells):
            out = cell(out[0], out[1])
            if i == 2 * 8 // 3 and self.training:
                logits_aux = self.auxiliary_head(out[-1])
        return out[-1], logits_aux

    def get_params(self):
        """(bn_params, non_bn_params) as SpikingJelly 2.0.0 returns them: every parameter in the first list."""
        return list(self.parameters()), []


class SpikeDHS(nn.Module):
    """The searched SpikeDHS network for CIFAR-100 (fixed path and cell; ``args`` as for ``newFeature``, with
    ``fea_block_multiplier * fea_filter_multiplier * 4 == 576``, e.g. 3 and 48). Input [N, C, H, W] is
    repeated over 6 steps; output ``(logits [N, 100], logits_aux or None)``."""

    def __init__(self, init_channels=3, args=None):
        super().__init__()
        network_arch_fea = network_layer_to_space(np.array([0, 0, 1, 1, 1, 2, 2, 2]))
        cell_arch_fea = np.array([[1, 1], [0, 1], [3, 2], [2, 1], [7, 1], [8, 1]])
        self.feature = newFeature(init_channels, network_arch_fea, cell_arch_fea, args=args)
        self.global_pooling = SpikingAdaptiveAvgPool2d(1)
        self.classifier = SpikingLinear(576, 100, spiking=False)
        self._time_step = 6

    def weight_parameters(self):
        return list(self.parameters())

    def forward(self, input):
        features, logits_aux = self.feature(input.expand(self._time_step, -1, -1, -1, -1))
        pooled = self.global_pooling(features)
        logits = self.classifier(pooled.view(*pooled.shape[:2], -1)).mean(0)
        if logits_aux is not None:
            logits_aux = logits_aux.mean(0)
        return (logits, logits_aux) if self.training else (logits, None)

    def dgs_freeze_weights(self):
        for value in self.parameters():
            value.requires_grad_(False)

    def dgs_unfreeze_weights(self):
        for value in self.parameters():
            value.requires_grad_(True)
