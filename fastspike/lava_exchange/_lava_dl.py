"""The parts of ``fastspike.lava_exchange`` that speak lava-dl: neuron parameter dicts, checks, and the builders of
slayer objects: neurons, synapses and blocks
from fastspike layers and neurons, as SpikingJelly 2.0's ``lava_exchange`` does. lava-dl is imported lazily;
without it (it needs Python < 3.11) every function here raises an ImportError that says so. Not exercised on
this machine (docs/export.md)."""
from __future__ import annotations

from typing import Union

import torch.nn as nn

from .. import neuron

__all__ = ["check_instance", "check_no_bias", "to_lava_neuron_param_dict", "to_lava_neuron",
           "linear_to_lava_synapse_dense", "conv2d_to_lava_synapse_conv", "avgpool2d_to_lava_synapse_pool",
           "to_lava_block_dense", "to_lava_block_conv", "to_lava_block_pool", "to_lava_block_flatten", "to_lava_blocks"]


_LAVA_SCALE = 1 << 6  # SpikingJelly's neuron.lava_s_cale


def _slayer():
    try:
        import lava.lib.dl.slayer as slayer
    except (ImportError, OSError) as e:
        raise ImportError("this fastspike.lava_exchange function builds lava-dl slayer objects and needs lava-dl "
                          "(pip install lava-dl; Python < 3.11). Without Lava, fastspike.lava_exchange.export_netx "
                          "and fastspike.export.to_loihi write the netx HDF5 file.") from e
    return slayer


def check_instance(m, instance):
    if not isinstance(m, instance):
        raise ValueError(f"expected a module of type {instance}, but got {type(m).__name__} ({m}).")


def check_no_bias(m):
    if m.bias is not None:
        raise ValueError(f"Lava synapses have no bias, but {type(m).__name__} has one; build it with bias=False.")


def _decays(m: nn.Module):
    """(current_decay, voltage_decay) of an IFNode or LIFNode(decay_input=False) with v_reset=0."""
    if isinstance(m, (neuron.IFNode, neuron.LIFNode)) and not isinstance(m, neuron.ParametricLIFNode):
        if m.v_reset != 0.0:
            raise ValueError(f"Lava neurons reset to 0, but {type(m).__name__} has v_reset={m.v_reset!r}.")
        if isinstance(m, neuron.LIFNode):
            if m.decay_input:
                raise ValueError("Lava's CUBA neuron has decay_input=False semantics; LIFNode has decay_input=True.")
            return 1.0, 1.0 / m.tau
        return 1.0, 0.0
    raise NotImplementedError(f"Lava conversion supports IFNode and LIFNode, but got {type(m).__name__}.")


def to_lava_neuron_param_dict(sj_ms_neuron: nn.Module) -> dict:
    """lava-dl's ``slayer.neuron.cuba`` parameters of an IFNode or LIFNode(decay_input=False), v_reset=0."""
    current_decay, voltage_decay = _decays(sj_ms_neuron)
    return {"threshold": sj_ms_neuron.v_threshold, "current_decay": current_decay, "voltage_decay": voltage_decay,
            "tau_grad": 1, "scale_grad": 1, "scale": getattr(sj_ms_neuron, "lava_s_cale", _LAVA_SCALE), "norm": None,
            "dropout": None, "shared_param": True, "persistent_state": True, "requires_grad": False,
            "graded_spike": False}


def to_lava_neuron(sj_ms_neuron: nn.Module):
    return _slayer().neuron.cuba.Neuron(**to_lava_neuron_param_dict(sj_ms_neuron))


def linear_to_lava_synapse_dense(fc: nn.Linear):
    check_instance(fc, nn.Linear)
    check_no_bias(fc)
    dense = _slayer().synapse.Dense(fc.in_features, fc.out_features)
    dense.weight.data[:, :, 0, 0, 0] = fc.weight.data.clone()
    return dense


def _conv_args(conv: nn.Conv2d) -> dict:
    return dict(in_features=conv.in_channels, out_features=conv.out_channels, kernel_size=conv.kernel_size,
                stride=conv.stride, padding=conv.padding, dilation=conv.dilation, groups=conv.groups)


def conv2d_to_lava_synapse_conv(conv2d_nn: nn.Conv2d):
    check_instance(conv2d_nn, nn.Conv2d)
    check_no_bias(conv2d_nn)
    conv = _slayer().synapse.Conv(**_conv_args(conv2d_nn))
    conv.weight.data[:, :, :, :, 0] = conv2d_nn.weight.data.clone()
    return conv


def avgpool2d_to_lava_synapse_pool(pool2d_nn: nn.AvgPool2d):
    """A lava-dl sum-pooling synapse with the average pooling's geometry (Lava pools by summing)."""
    check_instance(pool2d_nn, nn.AvgPool2d)
    return _slayer().synapse.Pool(pool2d_nn.kernel_size, pool2d_nn.stride, pool2d_nn.padding)


def _block(kind, layer, sj_ms_neuron, quantize_to_8bit, args):
    extra = {} if quantize_to_8bit else {"pre_hook_fx": None}
    init = getattr(_slayer().block.cuba, kind)
    return init(to_lava_neuron_param_dict(sj_ms_neuron), *args.get("pos", ()), delay_shift=False,
                **args.get("kw", {}), **extra)


def to_lava_block_dense(fc: nn.Linear, sj_ms_neuron: nn.Module, quantize_to_8bit: bool = True):
    check_instance(fc, nn.Linear)
    check_no_bias(fc)
    block = _block("Dense", fc, sj_ms_neuron, quantize_to_8bit, {"pos": (fc.in_features, fc.out_features)})
    block.synapse.weight.data[:, :, 0, 0, 0] = fc.weight.data.clone()
    return block


def to_lava_block_conv(conv2d_nn: nn.Conv2d, sj_ms_neuron: nn.Module, quantize_to_8bit: bool = True):
    check_instance(conv2d_nn, nn.Conv2d)
    check_no_bias(conv2d_nn)
    block = _block("Conv", conv2d_nn, sj_ms_neuron, quantize_to_8bit, {"kw": _conv_args(conv2d_nn)})
    block.synapse.weight.data[:, :, :, :, 0] = conv2d_nn.weight.data.clone()
    return block


def to_lava_block_pool(pool2d_nn: nn.AvgPool2d, sj_ms_neuron: nn.Module, quantize_to_8bit: bool = True):
    check_instance(pool2d_nn, nn.AvgPool2d)
    return _block("Pool", pool2d_nn, sj_ms_neuron, quantize_to_8bit,
                  {"pos": (pool2d_nn.kernel_size, pool2d_nn.stride, pool2d_nn.padding)})


def to_lava_block_flatten(flatten_nn: nn.Flatten):
    check_instance(flatten_nn, nn.Flatten)
    if flatten_nn.start_dim != 1:
        raise ValueError(f"Lava flattens from dimension 1 only, but got start_dim={flatten_nn.start_dim}.")
    return _slayer().block.cuba.Flatten()


def to_lava_blocks(net: Union[list, tuple, nn.Sequential]) -> list:
    """lava-dl blocks of a sequence ``Linear/Conv2d/AvgPool2d -> IFNode/LIFNode`` pairs and Flatten modules; the
    layer after an AvgPool2d block gets its weights divided by the pool area (Lava's pooling sums)."""
    blocks, i, k = [], 0, None
    while i < len(net):
        m = net[i]
        if isinstance(m, nn.Flatten):
            blocks.append(to_lava_block_flatten(m))
            i += 1
            continue
        if not isinstance(m, (nn.Linear, nn.Conv2d, nn.AvgPool2d)) or i + 1 >= len(net) \
                or not isinstance(net[i + 1], (neuron.IFNode, neuron.LIFNode)):
            raise ValueError(f"to_lava_blocks: layer {i} ({type(m).__name__}) must be a Linear, Conv2d or AvgPool2d "
                             "followed by an IFNode/LIFNode, or a Flatten.")
        if k is not None and isinstance(m, (nn.Linear, nn.Conv2d)):
            m.weight.data /= k
            k = None
        convert = {nn.Linear: to_lava_block_dense, nn.Conv2d: to_lava_block_conv, nn.AvgPool2d: to_lava_block_pool}
        blocks.append(convert[type(m)](m, net[i + 1]))
        if isinstance(m, nn.AvgPool2d):
            ks = m.kernel_size if isinstance(m.kernel_size, tuple) else (m.kernel_size, m.kernel_size)
            k = float(ks[0] * ks[1])
        i += 2
    return blocks


