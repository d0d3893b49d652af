"""Model zoo at SpikingJelly 2.0.0's import path ``activation_based.model`` (see docs/models.md).

``from spikingjelly.activation_based.model import sew_resnet`` becomes ``from fastspike.model import sew_resnet``:
the same submodules, classes, builders, constructor arguments and state_dict keys. ``fastspike.models`` is the
same package under its older fastspike name (its submodules are these module objects, not copies).

``pretrained=True`` never downloads: it loads the checkpoint SpikingJelly would download from the local
torch.hub cache (``checkpoint_dir()``) and otherwise raises FileNotFoundError naming the file and where to put it.
"""
from ._common import checkpoint_dir
from . import parametric_lif_net, sew_resnet, spiking_resnet, spiking_vgg, spikformer  # noqa: F401
from .parametric_lif_net import *  # noqa: F401,F403
from .sew_resnet import *  # noqa: F401,F403
from .spiking_resnet import *  # noqa: F401,F403
from .spiking_vgg import *  # noqa: F401,F403
from .spikformer import *  # noqa: F401,F403

#: the submodules, by SpikingJelly's names (fastspike.models aliases each of them)
SUBMODULES = ("parametric_lif_net", "sew_resnet", "spiking_resnet", "spiking_vgg", "spikformer")
