"""Benchmark case modules. Each registers its cases on import; a module whose dependencies are missing
must still import (its cases report themselves unavailable)."""
import importlib
import warnings

for _name in ("neuron", "psn", "synapse", "models", "open_neuromorphic"):
    try:
        importlib.import_module(f"{__name__}.{_name}")
    except ModuleNotFoundError as e:
        if e.name != f"{__name__}.{_name}":  # the module exists but something it imports at top level broke
            warnings.warn(f"fastspike.bench: case module {_name!r} failed to import: {e}", RuntimeWarning)
    except Exception as e:  # pragma: no cover - a broken case module must not break the others
        warnings.warn(f"fastspike.bench: case module {_name!r} failed to import: {e!r}", RuntimeWarning)
