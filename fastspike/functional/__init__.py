"""Functions over networks, sequences, neurons and spikes (SpikingJelly 2.0.0's ``activation_based.functional``).

One submodule per job, as in SpikingJelly; every name is importable from ``fastspike.functional``:

* ``net_config``: reset_net, set_step_mode, detach_net, collect/reset/invalidate helpers (and fastspike's
  set_backend);
* ``forward``: running modules over time (multi_step_forward, seq_to_ann_forward, chunked and time-last forms);
* ``neuron``: neuron dynamics with explicit state (``lif_step``, ``lif_multi_step``, ... on the fused kernels);
* ``layer``: one-step forms of stateful layers (delay_step, neunorm_step, synapse_filter_step);
* ``learning``: one STDP / MSTDP / MSTDPET step;
* ``spike``: bit packing of spikes, packed/sparse linear, IF/LIF layers driving a Linear;
* ``loss`` and ``misc``: spike losses and training utilities.

``conv_bn_fusion`` (fuse_conv_bn_eval_modules, pack_conv_bn_train_modules) is imported on its own, as in
SpikingJelly. This package imports nothing from ``fastspike.layer``: the layer containers build on it.
"""
from . import forward, layer, learning, loss, misc, net_config, neuron, spike
from .forward import *
from .layer import *
from .learning import *
from .loss import *
from .misc import *
from .net_config import *
from .neuron import *
from .spike import *

__all__ = (forward.__all__ + layer.__all__ + learning.__all__ + loss.__all__ + misc.__all__ + net_config.__all__
           + neuron.__all__ + spike.__all__)
