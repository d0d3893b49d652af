"""NIR exchange with SpikingJelly 2.0's names (``activation_based.nir_exchange``), built on ``fastspike.export``:
``export_to_nir(net, example_input, save_path=None, dt=1e-4)`` and
``import_from_nir(graph, dt=1e-4, device='cpu', dtype=torch.float32, step_mode='s')``.

The mapping, validation and interop notes are those of ``fastspike.export.to_nir``/``from_nir`` (docs/export.md);
the differences from SpikingJelly's own exchange are listed in ``from_nir.py`` and ``to_nir.py``.
"""
from .from_nir import NIRStatefulGraph, import_from_nir
from .to_nir import export_to_nir

__all__ = ["export_to_nir", "import_from_nir", "NIRStatefulGraph"]
