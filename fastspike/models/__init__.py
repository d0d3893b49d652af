"""``fastspike.models``: the model zoo under its older fastspike name; one implementation with ``fastspike.model``
(SpikingJelly's path). Every submodule is registered here as the same module object
(``fastspike.models.sew_resnet is fastspike.model.sew_resnet``), so both import styles work and share classes.
"""
import sys as _sys

from .. import model as _model
from ..model import *
from ..model import SUBMODULES, checkpoint_dir

for _name in SUBMODULES:
    _sys.modules[f"{__name__}.{_name}"] = getattr(_model, _name)
    globals()[_name] = getattr(_model, _name)
del _name
