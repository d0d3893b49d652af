"""Networks run under ``torch.inference_mode()`` as they do under ``torch.no_grad()``: the same outputs, no error.

Inference tensors have no version counter; code that reads ``t._version`` (fastspike's known-binary record of
spikes, ops/bits/known.py, and the synapse weight caches) must not touch it for them. Before this test every fused
neuron raised "Inference tensors do not track version counter" under inference_mode.
"""
import pytest
import torch
import torch.nn as nn

from fastspike import functional, layer, models, neuron
from fastspike.ops import bits
from helpers import DEVICE
from test_compile import MODELS, _input


def _synapses(event_driven):
    """Spikes into every synapse kind, with pooling and BatchNorm between, multi-step."""
    return nn.Sequential(
        layer.Conv2d(2, 4, 3, padding=1, step_mode="m", event_driven=event_driven), layer.BatchNorm2d(4, step_mode="m"),
        neuron.LIFNode(step_mode="m"), layer.MaxPool2d(2, step_mode="m"),
        layer.Conv2d(4, 4, 3, padding=1, step_mode="m", event_driven=event_driven), neuron.IFNode(step_mode="m"),
        layer.Flatten(step_mode="m"), layer.Linear(4 * 4 * 4, 5, step_mode="m", event_driven=event_driven),
        neuron.ParametricLIFNode(step_mode="m"),
    )


NETS = dict(MODELS)
NETS.update({f"synapses-{e}": (lambda e=e: _synapses(e)) for e in (False, True, "auto")})
NETS["sew_resnet18"] = lambda: models.sew_resnet18(cnf="ADD", spiking_neuron=neuron.LIFNode, num_classes=5)


def _x(name):
    torch.manual_seed(0)
    if name.startswith("synapses"):
        return (torch.rand(3, 2, 2, 8, 8, device=DEVICE) < 0.3).float()
    if name == "sew_resnet18":
        return torch.rand(2, 3, 32, 32, device=DEVICE)
    return _input(name)


@pytest.mark.parametrize("name", list(NETS))
def test_inference_mode_equals_no_grad(name):
    torch.manual_seed(0)
    net = NETS[name]().to(DEVICE).eval()
    x = _x(name)
    outs = []
    for ctx in (torch.no_grad, torch.inference_mode):
        functional.reset_net(net)
        with ctx():
            y = net(x)
            y2 = net(x)  # a second call: the state carried from the first
        outs.append((y, y2))
    for a, b in zip(*outs):
        if not isinstance(a, (list, tuple)):  # NonSpikingLIFNode returns a list of steps in step mode 'm'
            a, b = [a], [b]
        assert all(t.is_inference() for t in b) and torch.equal(torch.stack(a), torch.stack(b))


def test_inference_spikes_are_not_recorded():
    lif = neuron.LIFNode(step_mode="m")
    with torch.inference_mode():
        s = lif(torch.randn(3, 2, 8, device=DEVICE) * 3)
        assert not bits.known_binary(s) and not bits.known_binary(s[0])
    lif.reset()
    s = lif(torch.randn(3, 2, 8, device=DEVICE) * 3)
    assert bits.known_binary(s)  # outside inference_mode the record is made as before
