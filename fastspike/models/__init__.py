"""Model zoo with SpikingJelly 2.0.0's constructors and state_dict keys (see docs/models.md).

``pretrained=True`` never downloads: it loads the checkpoint SpikingJelly would download from the local
torch.hub cache (``fastspike.models.checkpoint_dir()``) and otherwise raises FileNotFoundError naming the
file and where to put it.
"""
from ._common import checkpoint_dir
from .parametric_lif_net import *  # noqa: F401,F403
from .sew_resnet import *  # noqa: F401,F403
from .spiking_resnet import *  # noqa: F401,F403
from .spiking_vgg import *  # noqa: F401,F403
from .spikformer import *  # noqa: F401,F403
from . import parametric_lif_net, sew_resnet, spiking_resnet, spiking_vgg, spikformer  # noqa: F401
