"""``fastspike.ann2snn.recipes.step_mode_adapters.adapt_step_mode_graph`` with SpikingJelly 2.0.0's signature
(``context`` keyword-only and required) gives, on a traced graph with stateless layers around a neuron, the
outputs of SpikingJelly's adapted graph in multi-step mode, and the same outputs step by step in single-step
mode."""
import inspect

import pytest
import torch
import torch.fx as fx
import torch.nn as nn

from fastspike import functional, neuron
from fastspike.ann2snn.recipes.step_mode_adapters import adapt_step_mode_graph

pytestmark = pytest.mark.peers


def _net(neuron_module):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(6, 5)
            self.sn = neuron_module.IFNode(v_threshold=0.5)
            self.fc2 = nn.Linear(5, 3)

        def forward(self, x):
            h = self.fc1(torch.flatten(x, 1))
            return self.fc2(self.sn(h) + 0.5 * h)

    return Net()


def _trace(module, leaf_types):
    class Tracer(fx.Tracer):
        def is_leaf_module(self, m, name):
            return isinstance(m, leaf_types) or super().is_leaf_module(m, name)

    return fx.GraphModule(module, Tracer().trace(module))


def test_signature_is_spikingjellys():
    params = inspect.signature(adapt_step_mode_graph).parameters
    assert params["context"].kind is inspect.Parameter.KEYWORD_ONLY
    assert params["context"].default is inspect.Parameter.empty
    with pytest.raises(TypeError):
        adapt_step_mode_graph(fx.symbolic_trace(nn.Linear(2, 2)))
    with pytest.raises(TypeError, match="my graph"):
        adapt_step_mode_graph(nn.Linear(2, 2), context="my graph")


def test_adapted_graph_matches_spikingjelly_in_both_step_modes():
    pytest.importorskip("spikingjelly")
    from spikingjelly.activation_based import functional as sf
    from spikingjelly.activation_based import neuron as sn
    from spikingjelly.activation_based.ann2snn.recipes.step_mode_adapters import adapt_step_mode_graph as sj_adapt

    torch.manual_seed(0)
    ref_net, our_net = _net(sn), _net(neuron)
    our_net.load_state_dict(ref_net.state_dict())
    ref = sj_adapt(_trace(ref_net, sn.IFNode), context="test", wrap_module_types=(nn.Linear,))
    ours = adapt_step_mode_graph(_trace(our_net, neuron.IFNode), context="test")
    sf.set_step_mode(ref, "m")
    functional.set_step_mode(ours, "m")
    x = torch.randn(6, 2, 2, 3) * 2
    y_ref, y = ref(x), ours(x)
    assert y.shape == (6, 2, 3)
    torch.testing.assert_close(y, y_ref, rtol=1e-6, atol=1e-6)
    functional.reset_net(ours)
    functional.set_step_mode(ours, "s")
    steps = torch.stack([ours(x[t]) for t in range(x.shape[0])])
    torch.testing.assert_close(steps, y, rtol=1e-6, atol=1e-6)
