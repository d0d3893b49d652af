"""SpikingJelly 2.0's tutorial examples, run twice with only the import line changed.

Each snippet below walks through one page of SpikingJelly's activation_based documentation (basic concept,
neuron, surrogate, monitor, encoding, STDP; the examples that need no download), written for this test in its
own words with SpikingJelly's imports. The test runs it as written, then with ``spikingjelly.activation_based``
replaced by ``fastspike`` (nothing else changes), from the same seed, and compares every value the snippet puts in
``out``: spikes exactly, real values to float32 rounding.
"""
import textwrap

import pytest
import torch

pytestmark = pytest.mark.peers


def _run(src: str, swap: bool) -> dict:
    code = textwrap.dedent(src)
    if swap:
        code = code.replace("spikingjelly.activation_based", "fastspike")
    ns = {"__name__": "__tutorial__"}
    torch.manual_seed(0)
    exec(compile(code, "<tutorial fastspike>" if swap else "<tutorial spikingjelly>", "exec"), ns)
    return ns["out"]


def _compare(ref, got, path="out", tol=1e-5):
    if isinstance(ref, dict):
        assert isinstance(got, dict) and ref.keys() == got.keys(), f"{path}: keys {list(got)} != {list(ref)}"
        for k in ref:
            _compare(ref[k], got[k], f"{path}[{k!r}]", tol)
    elif isinstance(ref, (list, tuple)):
        assert isinstance(got, (list, tuple)) and len(ref) == len(got), f"{path}: length differs"
        for i, (a, b) in enumerate(zip(ref, got)):
            _compare(a, b, f"{path}[{i}]", tol)
    elif isinstance(ref, torch.Tensor):
        assert isinstance(got, torch.Tensor) and ref.shape == got.shape, f"{path}: {getattr(got, 'shape', got)}"
        assert torch.allclose(ref.double(), got.double(), rtol=tol, atol=tol), \
            f"{path}: max |diff| {(ref.double() - got.double()).abs().max().item():.3g}"
    else:
        assert ref == got, f"{path}: {got!r} != {ref!r}"


def check(src: str, tol: float = 1e-5) -> dict:
    pytest.importorskip("spikingjelly.activation_based.learning")  # imports monitor (needs tensorboard)
    ref = _run(src, swap=False)
    got = _run(src, swap=True)
    _compare(ref, got, tol=tol)
    return got


# ---------------------------------------------------------------------------------------------------------
# basic concept: step modes, states, propagation patterns
# ---------------------------------------------------------------------------------------------------------
BASIC = """
import torch
import torch.nn as nn
from spikingjelly.activation_based import neuron, functional, layer

out = {}
T, N, C, H, W = 4, 1, 3, 8, 8
x_seq = torch.rand([T, N, C, H, W])

# a single-step neuron fed step by step, through multi_step_forward, and a multi-step neuron
single = neuron.IFNode(step_mode='s')
out['loop'] = torch.stack([single(x_seq[t]) for t in range(T)])
single.reset()
out['multi_step_forward'] = functional.multi_step_forward(x_seq, single)
out['multi'] = neuron.IFNode(step_mode='m')(x_seq)

# the state lives in the module and follows the input's shape until reset()
node = neuron.IFNode()
out['v0'] = node.v
node(torch.rand([4]))
out['v1'] = node.v.clone()
node.reset()
out['v_after_reset'] = node.v
node(torch.rand([8]))
out['v2'] = node.v.clone()

# step-by-step and layer-by-layer propagation give the same spikes
x_seq = torch.rand([T, 2, C, H, W]) * 64.
net = nn.Sequential(
    layer.Conv2d(3, 8, kernel_size=3, padding=1, stride=1, bias=False), neuron.IFNode(),
    layer.MaxPool2d(2, 2), neuron.IFNode(), layer.Flatten(start_dim=1),
    layer.Linear(8 * H // 2 * W // 2, 10), neuron.IFNode())
with torch.no_grad():
    step_by_step = functional.multi_step_forward(x_seq, net)
    functional.reset_net(net)
    functional.set_step_mode(net, step_mode='m')
    layer_by_layer = net(x_seq)
out['step_by_step'] = step_by_step
out['max_error'] = (layer_by_layer - step_by_step).abs().max()
"""


def test_basic_concept():
    out = check(BASIC)
    assert out["max_error"] == 0 and out["step_by_step"].sum() > 0
    assert out["v0"] == 0.0 and out["v_after_reset"] == 0.0 and out["v2"].shape == (8,)


# ---------------------------------------------------------------------------------------------------------
# neuron: shapes, a long simulation, multi-step, a custom neuron
# ---------------------------------------------------------------------------------------------------------
NEURON = """
import torch
from spikingjelly.activation_based import neuron, functional

out = {}
if_layer = neuron.IFNode()
out['v_initial'] = if_layer.v
for shape in ([2, 3], [4, 5, 6]):
    if_layer(torch.rand(shape))
    out[f'v_shape_{len(shape)}'] = tuple(if_layer.v.shape)
    if_layer.reset()

# one neuron driven by a constant 0.02 for 150 steps, then 32 neurons by random inputs for 50 steps
x = torch.as_tensor([0.02])
s, v = [], []
for t in range(150):
    s.append(if_layer(x))
    v.append(if_layer.v)
out['s_150'], out['v_150'] = torch.cat(s), torch.cat(v)
if_layer.reset()
x = torch.rand([32]) / 8.
s, v = [], []
for t in range(50):
    s.append(if_layer(x).unsqueeze(0))
    v.append(if_layer.v.unsqueeze(0))
out['s_32'], out['v_32'] = torch.cat(s), torch.cat(v)
if_layer.reset()

# single-step through multi_step_forward equals multi-step
x_seq = torch.rand([8, 2])
out['y_s'] = functional.multi_step_forward(x_seq, if_layer)
if_layer.reset()
if_layer.step_mode = 'm'
out['y_m'] = if_layer(x_seq)
if_layer.reset()
"""

CUSTOM_NEURON = """
import torch
from spikingjelly.activation_based import neuron

class SquareIFNode(neuron.BaseNode):
    # SpikingJelly 2.0's way to write a neuron: one step as a function of explicit state, H = V + X^2
    def single_step_functional_forward(self, inputs, states, **kwargs):
        x, v = inputs[0], states[0]
        h = v + x ** 2
        spike = self.surrogate_function(h - self.v_threshold)
        return (spike,), (self.apply_hard_reset(h, spike, self.v_reset), *states[1:])

out = {}
sif = SquareIFNode()
x_seq = torch.rand([4, 1]) * 1.2
vs = []
for t in range(4):
    sif(x_seq[t])
    vs.append(sif.v.clone())
out['v'] = torch.stack(vs)
sif.reset()
sif.step_mode = 'm'
out['y_seq'] = sif(x_seq)
"""


def test_neuron():
    out = check(NEURON)
    assert out["s_150"].sum() >= 2 and torch.equal(out["y_s"], out["y_m"])
    assert out["v_shape_2"] == (2, 3) and out["v_shape_3"] == (4, 5, 6)


def test_custom_neuron_runs_in_spikingjelly():
    pytest.importorskip("spikingjelly")
    assert _run(CUSTOM_NEURON, swap=False)["y_seq"].sum() > 0


def test_custom_neuron():
    out = check(CUSTOM_NEURON)
    assert out["y_seq"].sum() > 0


# ---------------------------------------------------------------------------------------------------------
# surrogate: the module and the functional style
# ---------------------------------------------------------------------------------------------------------
SURROGATE = """
import torch
from spikingjelly.activation_based import surrogate

out = {}
sg = surrogate.Sigmoid(alpha=4.)
x = torch.rand([8]) - 0.5
x.requires_grad = True
y = sg(x)
y.sum().backward()
out['y'], out['grad'] = y.detach(), x.grad.clone()

x.grad = None
y = surrogate.sigmoid.apply(x, 4.)
y.sum().backward()
out['y_functional'], out['grad_functional'] = y.detach(), x.grad.clone()
for name, fn, args in (('soft_sign', surrogate.soft_sign, (2.,)), ('leaky_k_relu', surrogate.leaky_k_relu, (0.1, 1.))):
    x.grad = None
    fn.apply(x, *args).sum().backward()
    out[name] = x.grad.clone()
"""


def test_surrogate():
    out = check(SURROGATE, tol=1e-7)
    assert torch.equal(out["grad"], out["grad_functional"])


# ---------------------------------------------------------------------------------------------------------
# monitor
# ---------------------------------------------------------------------------------------------------------
MONITOR = """
import torch
import torch.nn as nn
from spikingjelly.activation_based import monitor, neuron, functional, layer, surrogate

out = {}
net = nn.Sequential(layer.Linear(8, 4), neuron.IFNode(), layer.Linear(4, 2), neuron.IFNode())
for p in net.parameters():  # positive weights, so that there are spikes
    p.data.abs_()
functional.set_step_mode(net, 'm')
x_seq = torch.rand([4, 1, 8])

spike_seq_monitor = monitor.OutputMonitor(net, neuron.IFNode)
with torch.no_grad():
    net(x_seq)
out['records'] = list(spike_seq_monitor.records)
out['first'] = spike_seq_monitor[0]
out['layers'] = list(spike_seq_monitor.monitored_layers)
out['by_name'] = spike_seq_monitor['1']
spike_seq_monitor.clear_recorded_data()
out['cleared'] = (list(spike_seq_monitor.records), list(spike_seq_monitor['1']))
del spike_seq_monitor
functional.reset_net(net)

def firing_rate(s_seq):
    return s_seq.flatten(1).mean(1)

fr_monitor = monitor.OutputMonitor(net, neuron.IFNode, firing_rate)
with torch.no_grad():
    fr_monitor.disable()
    net(x_seq)
    functional.reset_net(net)
    out['disabled'] = list(fr_monitor.records)
    fr_monitor.enable()
    net(x_seq)
    out['rates'] = list(fr_monitor.records)
    functional.reset_net(net)
del fr_monitor

for m in net.modules():
    if isinstance(m, neuron.IFNode):
        m.store_v_seq = True
v_seq_monitor = monitor.AttributeMonitor('v_seq', pre_forward=False, net=net, instance=neuron.IFNode)
with torch.no_grad():
    net(x_seq)
    out['v_seq'] = list(v_seq_monitor.records)
    functional.reset_net(net)
del v_seq_monitor

input_monitor = monitor.InputMonitor(net, neuron.IFNode)
with torch.no_grad():
    net(x_seq)
    out['inputs'] = list(input_monitor.records)
    functional.reset_net(net)
del input_monitor

grad_monitor = monitor.GradOutputMonitor(net, neuron.IFNode)
net(x_seq).sum().backward()
out['grad_outputs'] = list(grad_monitor.records)
functional.reset_net(net)
del grad_monitor

# a deep net: the norm of dL/dX per layer for several surrogate widths
deep = []
for i in range(10):
    deep.append(layer.Linear(8, 8))
    # (an own surrogate per layer: the loop below changes alpha, which must not leak into the default instance
    # that every IFNode() shares)
    deep.append(neuron.IFNode(surrogate_function=surrogate.Sigmoid()))
deep = nn.Sequential(*deep)
functional.set_step_mode(deep, 'm')
x_seq = torch.rand([4, 1, 8])
input_grad_monitor = monitor.GradInputMonitor(deep, neuron.IFNode, function_on_grad_input=torch.norm)
out['grad_norms'] = {}
for alpha in [0.1, 0.5, 2, 4, 8]:
    for m in deep.modules():
        if isinstance(m, surrogate.Sigmoid):
            m.alpha = alpha
    deep(x_seq).sum().backward()
    out['grad_norms'][alpha] = [r.detach().clone() for r in input_grad_monitor.records]
    functional.reset_net(deep)
    for p in deep.parameters():
        p.grad.zero_()
    input_grad_monitor.records.clear()
"""


def test_monitor():
    from fastspike import neuron
    default = neuron.IFNode().surrogate_function
    out = check(MONITOR, tol=1e-4)
    assert default.alpha == 4.0  # the shared default surrogate is untouched
    assert out["layers"] == ["1", "3"] and out["disabled"] == [] and out["cleared"] == ([], [])
    assert len(out["grad_norms"][4]) == 10


# ---------------------------------------------------------------------------------------------------------
# encoding
# ---------------------------------------------------------------------------------------------------------
ENCODING = """
import torch
from spikingjelly.activation_based import encoding

out = {}
image = torch.rand([32, 32])          # stands in for the tutorial's image (no download)
pe = encoding.PoissonEncoder()
out['poisson'] = torch.stack([pe(image) for t in range(20)])
total = torch.zeros_like(image)
for t in range(512):
    total += pe(image)
out['poisson_rate_error'] = (total / 512 - image).abs().mean()

spike = torch.zeros([5, 3])
spike[1, 0] = 1
spike[0, 1] = 1
spike[4, 2] = 1
periodic = encoding.PeriodicEncoder(spike)
out['periodic'] = torch.stack([periodic(spike) for t in range(20)])

x = torch.rand([6])
le = encoding.LatencyEncoder(20)
out['latency'] = torch.stack([le(x) for t in range(20)])

wpe = encoding.WeightedPhaseEncoder(8)
x = torch.tensor([192., 1., 128., 255.]) / 256.
out['phase'] = torch.stack([wpe(x) for t in range(8)])
"""


def test_encoding():
    out = check(ENCODING, tol=0)
    assert out["poisson_rate_error"] < 0.05
    assert out["periodic"][:, 0].tolist()[:5] == [0, 1, 0, 0, 0] and torch.equal(out["periodic"][:5],
                                                                                 out["periodic"][5:10])
    assert torch.equal(out["latency"].sum(0), torch.ones(6))
    # the weighted phase table: 192/256 -> 11000000, 1/256 -> 00000001, 128/256 -> 10000000, 255/256 -> 11111111
    assert out["phase"].t().tolist() == [[1, 1, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 1],
                                         [1, 0, 0, 0, 0, 0, 0, 0], [1] * 8]


# ---------------------------------------------------------------------------------------------------------
# STDP
# ---------------------------------------------------------------------------------------------------------
STDP_TRACE = """
import torch
import torch.nn as nn
from spikingjelly.activation_based import neuron, layer, learning

def f_weight(x):
    return torch.clamp(x, -1, 1.)

T, N, lr = 128, 1, 0.01
net = nn.Sequential(layer.Linear(1, 1, bias=False), neuron.IFNode())
nn.init.constant_(net[0].weight.data, 0.4)
optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.)
in_spike = (torch.rand([T, N, 1]) > 0.7).float()
learner = learning.STDPLearner(step_mode='s', synapse=net[0], sn=net[1], tau_pre=2., tau_post=2.,
                               f_pre=f_weight, f_post=f_weight)
out = {'out_spike': [], 'trace_pre': [], 'trace_post': [], 'weight': []}
with torch.no_grad():
    for t in range(T):
        optimizer.zero_grad()
        out['out_spike'].append(net(in_spike[t]).squeeze())
        learner.step(on_grad=True)
        optimizer.step()
        out['weight'].append(net[0].weight.data.clone().squeeze())
        out['trace_pre'].append(learner.trace_pre.squeeze())
        out['trace_post'].append(learner.trace_post.squeeze())
out = {k: torch.stack(v) for k, v in out.items()}
"""

STDP_WITH_GRADIENT_DESCENT = """
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.optim import SGD, Adam
from spikingjelly.activation_based import learning, layer, neuron, functional

T, N, C, H, W = 8, 2, 3, 32, 32
def f_weight(x):
    return torch.clamp(x, -1, 1.)

net = nn.Sequential(
    layer.Conv2d(3, 16, kernel_size=3, stride=1, padding=1, bias=False), neuron.IFNode(), layer.MaxPool2d(2, 2),
    layer.Conv2d(16, 16, kernel_size=3, stride=1, padding=1, bias=False), neuron.IFNode(), layer.MaxPool2d(2, 2),
    layer.Flatten(), layer.Linear(16 * 8 * 8, 64, bias=False), neuron.IFNode(),
    layer.Linear(64, 10, bias=False), neuron.IFNode())
functional.set_step_mode(net, 'm')
stdp_types = (layer.Conv2d,)
learners = [learning.STDPLearner(step_mode='m', synapse=net[i], sn=net[i + 1], tau_pre=2., tau_post=100.,
                                 f_pre=f_weight, f_post=f_weight)
            for i in range(len(net)) if isinstance(net[i], stdp_types)]
stdp_params = [p for m in net.modules() if isinstance(m, stdp_types) for p in m.parameters()]
stdp_ids = {id(p) for p in stdp_params}
gd_params = [p for p in net.parameters() if id(p) not in stdp_ids]
optimizer_gd, optimizer_stdp = Adam(gd_params, lr=0.1), SGD(stdp_params, lr=0.1, momentum=0.)

x_seq = (torch.rand([T, N, C, H, W]) > 0.5).float()
target = torch.randint(low=0, high=10, size=[N])
optimizer_gd.zero_grad()
optimizer_stdp.zero_grad()
loss = F.cross_entropy(net(x_seq).mean(0), target)
loss.backward()
optimizer_stdp.zero_grad()
for learner in learners:
    learner.step(on_grad=True)
out = {'loss': loss.detach(), 'stdp_grads': [p.grad.clone() for p in stdp_params]}
optimizer_gd.step()
optimizer_stdp.step()
out['params'] = [p.detach().clone() for p in net.parameters()]
"""


def test_stdp_trace():
    out = check(STDP_TRACE, tol=1e-6)
    assert out["out_spike"].sum() > 0 and not torch.equal(out["weight"][0], out["weight"][-1])


def test_stdp_with_gradient_descent():
    out = check(STDP_WITH_GRADIENT_DESCENT, tol=1e-4)
    assert all(g.abs().sum() > 0 for g in out["stdp_grads"])
