"""Benchmark case modules. Each registers its cases on import. A case module imports fastspike features
lazily (inside its setup), so it imports even when the feature it measures has not landed; a module that
fails to import anyway is a bug: it is recorded in IMPORT_ERRORS, printed by the CLI, and makes it exit 1."""
import importlib
import warnings

IMPORT_ERRORS = {}

for _name in ("neuron", "neuron_nonlinear", "neuron_two_state", "neuron_compiled", "neuron_hooks", "neuron_fire",
              "neuron_stbif", "neuron_glif", "psn", "synapse", "models", "models_graphs",
              "open_neuromorphic"):
    try:
        importlib.import_module(f"{__name__}.{_name}")
    except Exception as e:  # a broken case module must not break the others
        IMPORT_ERRORS[_name] = f"{type(e).__name__}: {e}"
        warnings.warn(f"fastspike.bench: case module {_name!r} failed to import: {e!r}", RuntimeWarning)
