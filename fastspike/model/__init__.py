"""Model zoo at SpikingJelly 2.0.0's import path ``activation_based.model`` (see docs/models.md).

``from spikingjelly.activation_based.model import sew_resnet`` becomes ``from fastspike.model import sew_resnet``:
the same submodules, classes, builders, constructor arguments and state_dict keys. ``fastspike.models`` is the
same package under its older fastspike name (its submodules are these module objects, not copies).

``pretrained=True`` never downloads: it loads the checkpoint SpikingJelly would download from the local
torch.hub cache (``checkpoint_dir()``) and otherwise raises FileNotFoundError naming the file and where to put it.
"""
from ._common import checkpoint_dir
from . import (masnn, maxformer, ms_resnet, parametric_lif_net, qkformer, sew_resnet, snas_net,
               spike_dhs, spike_driven_transformer, spiking_resnet, spiking_vgg, spiking_vggws_ottt, spikformer)
from .masnn import *
from .maxformer import *
from .ms_resnet import *
from .parametric_lif_net import *
from .qkformer import *
from .sew_resnet import *
from .snas_net import *
from .spike_dhs import *
from .spike_driven_transformer import *
from .spiking_resnet import *
from .spiking_vgg import *
from .spiking_vggws_ottt import *
from .spikformer import *

#: the submodules, by SpikingJelly's names (fastspike.models aliases each of them)
SUBMODULES = ("masnn", "maxformer", "ms_resnet", "parametric_lif_net", "qkformer", "sew_resnet", "snas_net",
              "spike_dhs", "spike_driven_transformer", "spiking_resnet", "spiking_vgg", "spiking_vggws_ottt",
              "spikformer")
