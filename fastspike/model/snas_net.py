"""SNASNet ("Neural Architecture Search for Spiking Neural Networks", arXiv:2201.10355) with SpikingJelly
2.0.0's classes, arguments and state_dict keys.

A searched cell has four nodes; ``con_mat[row, col]`` (a 4x4 array) picks the operation from node ``row`` to node
``col``: 0 zero (``ScaleLayer``, times 0), 1 identity, 2 LIF -> 1x1 conv -> BN, 3 LIF -> 3x3 conv -> BN, 4 3x3
average pool. ``Neuronal_Cell`` uses the upper triangle (forward edges); ``Neuronal_Cell_backward`` also the lower
triangle, whose outputs feed the next time step (its ``last_*`` state). ``SNASNet(args, con_mat)`` stacks stem ->
cell -> conv -> pool -> cell -> neuron -> pool -> classifier; it runs single-step, looping over
``args.timestep`` steps internally on a static (direct-encoded) input [N, 3, H, W], and returns the mean over
steps of the output neurons' votes (groups of ``num_cluster``).

``args`` needs ``timestep``, ``second_avgpooling``, ``dataset`` ('cifar10', 'cifar100', 'tinyimagenet'),
``celltype`` ('forward' or 'backward'), ``threshold`` and ``tau``. Neurons: LIF with ATan, hard reset to 0,
detach_reset.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .. import layer, neuron, surrogate

__all__ = ["SNASNet"]

# per dataset: classes, output neurons, voting group, input size, channel ratio, spatial decay factor (times
# second_avgpooling), classifier hidden width, stem stride
_DATASETS = {
    "cifar10": (10, 100, 10, 32, 2, 2, 1024, 1),
    "cifar100": (100, 500, 5, 32, 1, 2, 1024, 1),
    "tinyimagenet": (200, 1000, 5, 64, 1, 4, 4096, 2),
}


class ScaleLayer(nn.Module):
    """Multiplies by a fixed scalar ``scale`` (0: the 'zero' operation of the search space)."""

    def __init__(self):
        super().__init__()
        self.scale = torch.tensor(0.0)

    def forward(self, input):
        return input * self.scale


def _lif(args) -> nn.Module:
    return neuron.LIFNode(v_threshold=args.threshold, v_reset=0.0, tau=args.tau, surrogate_function=surrogate.ATan(),
                          detach_reset=True)


def _operation(op, args, in_channel: int, out_channel: int) -> nn.Module:
    if op == 0:
        return ScaleLayer()
    if op == 1:
        return nn.Identity()
    if op in (2, 3):
        k = 1 if op == 2 else 3
        return nn.Sequential(_lif(args), nn.Conv2d(in_channel, out_channel, kernel_size=(k, k), stride=(1, 1),
                                                   padding=(k // 2, k // 2), bias=False),
                             nn.BatchNorm2d(out_channel, eps=1e-05, momentum=0.1, affine=True,
                                            track_running_stats=True))
    if op == 4:
        return nn.AvgPool2d(kernel_size=3, stride=1, padding=1)
    raise ValueError(f"con_mat entries must be operations 0-4, got {op!r}")


def _edges(con_mat, pairs, args, in_channel, out_channel) -> nn.ModuleList:
    return nn.ModuleList(_operation(con_mat[row, col], args, in_channel, out_channel) for row, col in pairs)


# edge order: forward (row < col) by column then row; backward (row > col) by column then row
_FORWARD_EDGES = [(row, col) for col in range(1, 4) for row in range(col)]
_BACKWARD_EDGES = [(row, col) for col in range(3) for row in range(col + 1, 4)]


class Neuronal_Cell(nn.Module):
    """Searched cell with forward edges only: node j = sum of the operations on the edges into it."""

    def __init__(self, args, in_channel, out_channel, con_mat):
        super().__init__()
        self.cell_architecture = _edges(con_mat, _FORWARD_EDGES, args, in_channel, out_channel)
        self.con_mat = con_mat

    def forward(self, x_in):
        ops = self.cell_architecture
        x_1 = ops[0](x_in)
        x_2 = ops[1](x_in) + ops[2](x_1)
        return ops[3](x_in) + ops[4](x_1) + ops[5](x_2)


class Neuronal_Cell_backward(nn.Module):
    """Searched cell with forward and backward edges: the backward edges' outputs of one step are added to the
    nodes' inputs at the next step (``last_xin``, ``last_x1``, ``last_x2``; 0 after ``SNASNet.neuron_init``)."""

    def __init__(self, args, in_channel, out_channel, con_mat):
        super().__init__()
        self.cell_architecture = _edges(con_mat, _FORWARD_EDGES, args, in_channel, out_channel)
        self.con_mat = con_mat
        self.cell_architecture_back = _edges(con_mat, _BACKWARD_EDGES, args, in_channel, out_channel)
        self.last_xin = 0.0
        self.last_x1 = 0.0
        self.last_x2 = 0.0

    def forward(self, x_in):
        ops, back = self.cell_architecture, self.cell_architecture_back
        a0 = x_in + self.last_xin
        x_1 = ops[0](a0)
        a1 = x_1 + self.last_x1
        x_2 = ops[1](a0) + ops[2](a1)
        a2 = x_2 + self.last_x2
        x_3 = ops[3](a0) + ops[4](a1) + ops[5](a2)
        self.last_xin = back[0](a1) + back[1](a2) + back[2](x_3)
        self.last_x1 = back[3](a2) + back[4](x_3)
        self.last_x2 = back[5](x_3)
        return x_3


class SNASNet(nn.Module):
    """SNASNet from a searched cell ``con_mat`` and the run options ``args`` (see the module docstring)."""

    def __init__(self, args, con_mat):
        super().__init__()
        if args.dataset not in _DATASETS:
            raise ValueError(f"args.dataset must be one of {sorted(_DATASETS)}, got {args.dataset!r}")
        if args.celltype not in ("forward", "backward"):
            raise ValueError(f"Unsupported celltype: {args.celltype!r}")
        self.con_mat = con_mat
        self.total_timestep = args.timestep
        self.second_avgpooling = args.second_avgpooling
        (self.num_class, self.num_final_neuron, self.num_cluster, self.img_size, self.channel_ratio, decay,
         self.classifier_inter_ch, self.stem_stride) = _DATASETS[args.dataset]
        self.in_channel = 3
        self.first_out_channel = 128
        self.spatial_decay = decay * self.second_avgpooling
        c1, c2 = 128 * self.channel_ratio, 256 * self.channel_ratio
        cell = Neuronal_Cell if args.celltype == "forward" else Neuronal_Cell_backward

        def bn(c):
            return nn.BatchNorm2d(c, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)

        self.stem = nn.Sequential(nn.Conv2d(self.in_channel, self.first_out_channel * self.channel_ratio,
                                            kernel_size=3, stride=self.stem_stride, padding=1, bias=False),
                                  nn.BatchNorm2d(self.first_out_channel * self.channel_ratio, affine=True))
        self.cell1 = cell(args, c1, c1, self.con_mat)
        self.downconv1 = nn.Sequential(bn(c1), _lif(args), nn.Conv2d(c1, c2, kernel_size=(3, 3), stride=(1, 1),
                                                                      padding=(1, 1), bias=False), bn(c2))
        self.resdownsample1 = nn.AvgPool2d(2, 2)
        self.cell2 = cell(args, c2, c2, self.con_mat)
        self.last_act = nn.Sequential(bn(c2), _lif(args))
        self.resdownsample2 = nn.AvgPool2d(self.second_avgpooling, self.second_avgpooling)
        side = self.img_size // self.spatial_decay
        self.classifier = nn.Sequential(layer.Dropout(0.5), nn.Linear(c2 * side * side, self.classifier_inter_ch,
                                                                      bias=False),
                                        _lif(args), nn.Linear(self.classifier_inter_ch, self.num_final_neuron))
        self.boost = nn.AvgPool1d(self.num_cluster, self.num_cluster)
        self._initialize_weights()

    def _initialize_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=2)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
            else:
                continue
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)

    def forward(self, input):
        """input: [N, 3, H, W] -> [N, num_class], the votes averaged over ``total_timestep`` steps."""
        self.neuron_init()
        votes = 0
        static_x = self.stem(input)
        for _ in range(self.total_timestep):
            x = self.resdownsample1(self.downconv1(self.cell1(static_x)))
            x = self.resdownsample2(self.last_act(self.cell2(x)))
            x = self.classifier(x.view(input.size(0), -1))
            votes = votes + self.boost(x.unsqueeze(1)).squeeze(1)
        return votes / self.total_timestep

    def neuron_init(self):
        """Clear the backward cells' carried inputs (the neurons keep their state until reset_net)."""
        for cell in (self.cell1, self.cell2):
            cell.last_xin = cell.last_x1 = cell.last_x2 = 0.0
