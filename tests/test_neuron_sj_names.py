"""Every public name of SpikingJelly 2.0.0's ``activation_based.neuron`` package (and of each of its submodules)
exists in fastspike.neuron at the same path, and every class and function takes SpikingJelly's arguments in
SpikingJelly's order with SpikingJelly's defaults (fastspike may only add trailing arguments with defaults)."""
import importlib
import inspect

import pytest
import torch

from fastspike import neuron

SUBMODULES = ["base_node", "integrate_and_fire", "ilif", "lif", "plif", "psn", "adapt", "nonlinear_if", "resonate",
              "flexsn", "few_spike", "ternary", "spikezip", "dsr", "inter_layer_connection", "lif_variants", "mpbn",
              "noisy", "online_learning"]


def _sj_neuron():
    return pytest.importorskip("spikingjelly.activation_based.neuron")


def _public(module):
    return [k for k in getattr(module, "__all__", dir(module)) if not k.startswith("_")]


@pytest.mark.peers
def test_every_public_name_exists():
    sj = _sj_neuron()
    names = [k for k in dir(sj) if not k.startswith("_") and not inspect.ismodule(getattr(sj, k))]
    assert len(names) >= 50
    missing = [k for k in names if not hasattr(neuron, k)]
    assert not missing, f"missing in fastspike.neuron: {missing}"


@pytest.mark.peers
@pytest.mark.parametrize("sub", SUBMODULES)
def test_submodule_paths(sub):
    sj_sub = importlib.import_module(f"spikingjelly.activation_based.neuron.{sub}")
    ours = importlib.import_module(f"fastspike.neuron.{sub}")
    missing = [k for k in _public(sj_sub) if not hasattr(ours, k)]
    assert not missing, f"fastspike.neuron.{sub} lacks {missing}"
    for k in _public(sj_sub):  # the same objects as the package-level names
        assert getattr(ours, k) is getattr(neuron, k)


def _same_default(a, b) -> bool:
    if a is inspect.Parameter.empty or b is inspect.Parameter.empty:
        return a is b
    if isinstance(a, torch.nn.Module):  # a surrogate instance: same class name, parameters and mode
        names = getattr(a, "_sg_param_names", ())
        return (type(a).__name__ == type(b).__name__ and getattr(a, "spiking", None) == getattr(b, "spiking", None)
                and all(getattr(a, n) == getattr(b, n) for n in names))
    return type(a) is type(b) and a == b


def _signature_target(obj):
    return obj.__init__ if inspect.isclass(obj) else obj


@pytest.mark.peers
def test_signatures_match():
    sj = _sj_neuron()
    problems = []
    for name in [k for k in dir(sj) if not k.startswith("_")]:
        ref = getattr(sj, name)
        if inspect.ismodule(ref) or not callable(ref):
            continue
        ours = getattr(neuron, name)
        p_ref = list(inspect.signature(_signature_target(ref)).parameters.values())
        p_ours = list(inspect.signature(_signature_target(ours)).parameters.values())
        if len(p_ours) < len(p_ref):
            problems.append(f"{name}: {len(p_ours)} parameters, SpikingJelly has {len(p_ref)}")
            continue
        for a, b in zip(p_ref, p_ours):
            if a.name != b.name or a.kind != b.kind or not _same_default(a.default, b.default):
                problems.append(f"{name}: parameter {b} != SpikingJelly's {a}")
        for extra in p_ours[len(p_ref):]:
            if extra.default is inspect.Parameter.empty and extra.kind not in (extra.VAR_POSITIONAL, extra.VAR_KEYWORD):
                problems.append(f"{name}: extra parameter {extra} has no default")
    assert not problems, "\n".join(problems)


def test_state_dict_keys():
    """state_dict keys (SpikingJelly's, so its checkpoints load) without needing SpikingJelly."""
    assert list(neuron.KLIFNode().state_dict()) == ["k"]
    assert list(neuron.GatedLIFNode(4).state_dict()) == ["alpha", "beta", "gamma", "tau", "v_threshold",
                                                          "linear_decay", "v_subreset", "conduct"]
    assert list(neuron.ILCCUBALIFNode(2, 3).state_dict()) == ["conn.weight", "conn.bias"]
    assert list(neuron.DSRIFNode().state_dict()) == ["v_threshold"]
    assert list(neuron.DSRLIFNode(v_threshold_training=False).state_dict()) == []
    assert list(neuron.ActivationAwareIFNode().state_dict()) == ["v_threshold", "v_offset"]
    assert list(neuron.STBIFNode(0.1, 4).state_dict()) == ["q_threshold", "pos_max", "neg_min"]
    assert list(neuron.MPBNLIFNode(out_features=3, learnable_vth=True).state_dict()) == [
        "a", "vbn.weight", "vbn.bias", "vbn.running_mean", "vbn.running_var", "vbn.num_batches_tracked"]
    for cls in (neuron.QIFNode, neuron.EIFNode, neuron.IzhikevichNode, neuron.RAFNode, neuron.CUBALIFNode,
                neuron.ComplementaryLIFNode, neuron.TernaryIFNode, neuron.ILIFNode, neuron.HalfThresholdIFNode):
        assert list(cls().state_dict()) == [], cls.__name__
    assert list(neuron.IzhikevichNode()._memories) == ["v", "w"]
    assert list(neuron.RAFNode()._memories) == ["v", "u"]
    assert list(neuron.CUBALIFNode()._memories) == ["v", "c"]
    assert list(neuron.ComplementaryLIFNode()._memories) == ["v", "m"]
    assert list(neuron.OTTTLIFNode()._memories) == ["v", "trace"]
