"""Step-mode layers and containers (SpikingJelly 2.0.0's ``activation_based.layer`` names).

Each submodule defines ``__all__``; add a module here with one ``from .x import *`` line.
"""
from .container import *
from .stateless_wrapper import *
from .dropout import *
from .bn import *
from .misc import *
from .attention import *
from .online_learning import *
