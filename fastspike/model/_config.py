"""Serializable model configurations: the base classes behind the zoo's config classes (``SEWResNet34Config``,
``SpikformerConfig``, ``SpikformerCIFAR10Config``), after SpikingJelly 2.0.0's ``distributed.vision.config``.

A config is a frozen dataclass of JSON-native fields (``time_steps``, ``num_classes``, ``step_mode`` and the
model's own); ``as_dict()``/``from_dict()`` round-trip it (``_target_`` names the class; SpikingJelly's class
paths are read as fastspike's). ``config.get_builder_cls()(config)`` builds the model. A ``NeuronConfig`` names
the neuron by class path (``'fastspike.neuron.LIFNode'`` or SpikingJelly's ``'spikingjelly.activation_based.
neuron.LIFNode'``), its keyword arguments and optionally a surrogate; other classes must be registered first
(``register_neuron_class``, ``register_surrogate_class``).

What fastspike builds: the whole model (``_build_canonical_model``), pipeline stages of it (``_pipeline_stage``),
and ``build(...)`` for one tensor-parallel rank without SpikingJelly's memory optimiser (``memopt_level=0``);
tensor parallelism and memopt raise NotImplementedError (fastspike has neither).
"""
from __future__ import annotations

import abc
import importlib
import math
from copy import deepcopy
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, ClassVar, Dict, Optional, Tuple

import torch
import torch.nn as nn

from .. import neuron, surrogate

__all__ = ["NeuronConfig", "ModelConfig", "ModelBuilder", "register_neuron_class", "register_surrogate_class"]

_NEURONS: Dict[str, type] = {}
_SURROGATES: Dict[str, type] = {}
_SJ_PREFIX = "spikingjelly.activation_based."


def _path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _check_json(value: Any, name: str) -> None:
    if value is None or isinstance(value, (str, bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{name} must contain only finite numbers, got {value!r}.")
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_json(item, f"{name}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{name} keys must be strings, got {key!r}.")
            _check_json(item, f"{name}.{key}")
        return
    raise TypeError(f"{name} must contain only JSON-native values, got {type(value).__name__}.")


def _register(cls, base: type, registry: dict) -> None:
    if not isinstance(cls, type) or not issubclass(cls, base):
        raise TypeError(f"cls must inherit {base.__name__}, got {cls!r}.")
    registry[_path(cls)] = cls


def register_neuron_class(cls: type) -> None:
    """Allow ``NeuronConfig(class_path=...)`` to name ``cls`` (a ``fastspike.neuron.BaseNode`` subclass)."""
    _register(cls, neuron.BaseNode, _NEURONS)


def register_surrogate_class(cls: type) -> None:
    """Allow ``NeuronConfig(surrogate=...)`` to name ``cls`` (a ``SurrogateFunctionBase`` subclass)."""
    _register(cls, surrogate.SurrogateFunctionBase, _SURROGATES)


def _resolve(class_path: str, registry: dict, package, base: type, kind: str) -> type:
    """A registered class, or one of fastspike's own by its path (SpikingJelly's path read as fastspike's)."""
    if class_path in registry:
        return registry[class_path]
    path = "fastspike." + class_path[len(_SJ_PREFIX):] if class_path.startswith(_SJ_PREFIX) else class_path
    if path.startswith(package.__name__ + "."):
        for name, value in vars(package).items():
            if isinstance(value, type) and issubclass(value, base) and path in (_path(value),
                                                                                 f"{package.__name__}.{name}"):
                return value
    raise ValueError(f"Unregistered {kind} class {class_path!r}; import it and call register_{kind}_class first "
                     f"(fastspike's own classes resolve by path, e.g. '{package.__name__}.LIFNode').")


@dataclass(frozen=True)
class NeuronConfig:
    """A neuron declared by data: class path, constructor keyword arguments, optional surrogate class path and
    its keyword arguments (all JSON-native). ``step_mode`` and ``backend`` are set by the model config and the
    device; the surrogate is given by ``surrogate``, not in ``kwargs``."""

    class_path: str
    kwargs: Dict[str, Any] = field(default_factory=dict)
    surrogate: Optional[str] = None
    surrogate_kwargs: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.class_path, str):
            raise TypeError(f"class_path must be a string, got {type(self.class_path).__name__}.")
        if not self.class_path or self.class_path.strip() != self.class_path:
            raise ValueError(f"class_path must be a non-empty fully qualified path, got {self.class_path!r}.")
        if self.surrogate is not None:
            if not isinstance(self.surrogate, str):
                raise TypeError(f"surrogate must be a string, got {type(self.surrogate).__name__}.")
            if not self.surrogate or self.surrogate.strip() != self.surrogate:
                raise ValueError(f"surrogate must be a non-empty fully qualified path, got {self.surrogate!r}.")
        if not isinstance(self.kwargs, dict) or not isinstance(self.surrogate_kwargs, dict):
            raise TypeError("neuron kwargs and surrogate_kwargs must be dictionaries.")
        reserved = {"backend", "step_mode", "surrogate_function"} & self.kwargs.keys()
        if reserved:
            raise ValueError(f"kwargs may not set {sorted(reserved)}: the backend is chosen automatically, "
                             "step_mode comes from the model config and the surrogate from `surrogate`.")
        if self.surrogate is None and self.surrogate_kwargs:
            raise ValueError("surrogate_kwargs requires a surrogate class.")
        _check_json(self.kwargs, "kwargs")
        _check_json(self.surrogate_kwargs, "surrogate_kwargs")

    def resolve(self) -> Tuple[type, Dict[str, Any]]:
        """(neuron class, constructor keyword arguments including the surrogate instance)."""
        self.__post_init__()
        cls = _resolve(self.class_path, _NEURONS, neuron, neuron.BaseNode, "neuron")
        kwargs = deepcopy(self.kwargs)
        if self.surrogate is not None:
            sg = _resolve(self.surrogate, _SURROGATES, surrogate, surrogate.SurrogateFunctionBase, "surrogate")
            kwargs["surrogate_function"] = sg(**deepcopy(self.surrogate_kwargs))
        return cls, kwargs


def resolve_neuron_config(config: Optional[NeuronConfig]) -> Tuple[Optional[type], Dict[str, Any]]:
    """(None, {}) for no config (the model's default neuron), else ``config.resolve()``."""
    return (None, {}) if config is None else config.resolve()


def _config_types() -> Dict[str, type]:
    types_, todo = {_path(NeuronConfig): NeuronConfig}, [ModelConfig]
    while todo:
        cls = todo.pop()
        types_[_path(cls)] = cls
        todo += cls.__subclasses__()
    return types_


def _encode(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        out = {"_target_": _path(type(value))}
        out.update({f.name: _encode(getattr(value, f.name)) for f in fields(value)})
        return out
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "_target_" not in value:
        return {k: _decode(v) for k, v in value.items()}
    target = value["_target_"]
    known = _config_types()
    if isinstance(target, str) and target not in known:
        for prefix in (_SJ_PREFIX + "model.", _SJ_PREFIX + "distributed.vision.config."):
            if target.startswith(prefix):
                name = target.rsplit(".", 1)[-1]
                target = next((p for p in known if p.rsplit(".", 1)[-1] == name), target)
    if not isinstance(target, str) or target not in known:
        raise ValueError(f"Unsupported config target {value['_target_']!r}; it must name a ModelConfig or a "
                         "NeuronConfig class.")
    cls = known[target]
    kwargs = {k: (v if cls is NeuronConfig else _decode(v)) for k, v in value.items() if k != "_target_"}
    return cls(**kwargs)


@dataclass(frozen=True)
class ModelConfig:
    """Base of the model configs: ``time_steps`` (> 0), ``num_classes`` (> 0), ``step_mode`` ('s' or 'm');
    ``builder`` (a class attribute) is the dotted path of the ModelBuilder subclass that builds the model."""

    builder: ClassVar[str]
    time_steps: int = 4
    num_classes: int = 1000
    step_mode: str = "m"

    def __post_init__(self) -> None:
        if self.time_steps <= 0 or self.num_classes <= 0:
            raise ValueError(f"time_steps and num_classes must be positive, got time_steps={self.time_steps}, "
                             f"num_classes={self.num_classes}.")
        if self.step_mode not in ("s", "m"):
            raise ValueError(f"step_mode must be 's' or 'm', got {self.step_mode!r}.")

    def get_builder_cls(self) -> type:
        module_name, class_name = self.builder.rsplit(".", 1)
        builder = getattr(importlib.import_module(module_name), class_name)
        if not isinstance(builder, type) or not issubclass(builder, ModelBuilder):
            raise TypeError(f"model builder {self.builder!r} must inherit ModelBuilder.")
        return builder

    def as_dict(self) -> Dict[str, Any]:
        """JSON-native dictionary with ``_target_`` naming this config's class."""
        return _encode(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "ModelConfig":
        config = _decode(data)
        if not isinstance(config, cls):
            raise TypeError(f"Expected {cls.__name__}, got {type(config).__name__}.")
        return config


class ModelBuilder(abc.ABC):
    """Builds the model of ``config``. Subclasses define ``_build_canonical_model()``, ``_pipeline_stage(model,
    rank, size)``, ``_fsdp_root_types`` and ``_stage_shapes(micro_batch, pipeline_rank, pipeline_size)``."""

    _fsdp_root_types: Tuple[type, ...] = ()

    def __init__(self, config: ModelConfig) -> None:
        self.config = config

    def _build_canonical_model(self) -> nn.Module:
        raise NotImplementedError(f"{type(self).__name__} does not build a canonical model.")

    def _pipeline_stage(self, model: nn.Module, rank: int, size: int) -> nn.Module:
        raise NotImplementedError(f"{type(self).__name__} does not split models into pipeline stages.")

    def _stage_shapes(self, micro_batch: int, rank: int, size: int):
        raise NotImplementedError(f"{type(self).__name__} does not describe its pipeline stages.")

    def _canonical_key_map(self, pipeline_rank: int, pipeline_size: int, model: Optional[nn.Module] = None):
        """{state_dict key in the stage: key in the whole model}."""
        model = self._build_canonical_model() if model is None else model
        full = {id(v): k for k, v in model.state_dict(keep_vars=True).items()}
        stage = self._pipeline_stage(model, pipeline_rank, pipeline_size)
        return {k: full[id(v)] for k, v in stage.state_dict(keep_vars=True).items()}

    def build(self, *, process_group=None, memopt_process_group=None, pipeline_rank: int = 0,
              pipeline_size: int = 1, pipeline_microbatches: int = 1, device=torch.device("cpu"),
              micro_batch_size: int = 1, memopt_level: int = 0, memopt_compress_inputs: bool = False,
              memopt_checkpoint_budget: str = "auto"):
        """(model or pipeline stage on ``device``, names of its FSDP roots, stage input shape, stage output shape);
        the shapes are None without pipelining."""
        if process_group is not None:
            import torch.distributed as dist

            if dist.get_world_size(process_group) > 1:
                raise NotImplementedError("fastspike builds these models for one tensor-parallel rank only "
                                          "(process_group world size 1); SpikingJelly's channel sharding is not in "
                                          "fastspike.")
        if memopt_level:
            raise NotImplementedError(f"memopt_level={memopt_level}: fastspike has no memory optimiser "
                                      "(SpikingJelly's memopt); use memopt_level=0.")
        model = self._pipeline_stage(self._build_canonical_model(), pipeline_rank, pipeline_size)
        roots = tuple(name for name, m in model.named_modules() if isinstance(m, self._fsdp_root_types))
        model.to(device)
        if pipeline_size == 1:
            return model, roots, None, None
        return (model, roots) + tuple(self._stage_shapes(micro_batch_size // pipeline_microbatches, pipeline_rank,
                                                         pipeline_size))
