"""Learning rules beside backpropagation (SpikingJelly 2.0.0's ``activation_based.learning``).

* ``plasticity``: local, unsupervised or reward-modulated synaptic plasticity: :class:`STDPLearner`,
  :class:`MSTDPLearner`, :class:`MSTDPETLearner` (their traces over a sequence are one
  ``fastspike.ops.linear_scan``);
* ``online_learning``: gradient training online in time (OTTT, FPTT loops).
"""
from . import online_learning, plasticity
from .plasticity import MSTDPETLearner, MSTDPLearner, STDPLearner

__all__ = ["plasticity", "online_learning", "STDPLearner", "MSTDPLearner", "MSTDPETLearner"]
