"""Conversion recipes: the algorithm half of SpikingJelly 2.0's ANN2SNN API (the converters in
``fastspike.ann2snn.fx_converter`` are the executor half).

An :class:`FXConversionRecipe` says what each step of the fixed FX pipeline does:
``validate -> before_trace -> (trace) -> after_trace -> insert_observers -> calibrate -> replace -> finalize``.
Every step but ``validate`` returns the object the next step works on; the defaults do nothing. A
:class:`ModuleConversionRecipe` rewrites an ``nn.Module`` tree directly (``validate -> convert_module``), without
tracing. Recipes are strategies, not executors: they have no ``convert``/``__call__``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch.fx as fx
import torch.nn as nn

if TYPE_CHECKING:
    from ..fx_converter import FXConverter, ModuleConverter

__all__ = ["ConversionRecipe", "FXConversionRecipe", "ModuleConversionRecipe", "replace_submodule"]


def replace_submodule(fx_model: fx.GraphModule, target: str, module: nn.Module) -> None:
    """Put ``module`` at the dotted path ``target`` of ``fx_model`` (the parent must exist)."""
    parent_name, _, child_name = target.rpartition(".")
    parent = fx_model.get_submodule(parent_name) if parent_name else fx_model
    setattr(parent, child_name, module)


class FXConversionRecipe:
    """Base class of FX-graph conversion recipes (``ConversionRecipe`` is the same class). Override the steps
    the algorithm needs; each receives the executing :class:`~fastspike.ann2snn.FXConverter` (its ``device`` is
    resolved during a conversion) and returns the model for the next step."""

    def validate(self, converter: "FXConverter") -> None:
        """Check the recipe's arguments; called once at the start of every conversion. Default: nothing."""
        return None

    def before_trace(self, converter: "FXConverter", ann: nn.Module) -> nn.Module:
        """Prepare the ANN before torch.fx traces it (e.g. ``ann.eval()``). Default: ``ann`` unchanged."""
        return ann

    def after_trace(self, converter: "FXConverter", fx_model: fx.GraphModule) -> fx.GraphModule:
        """Rewrite the traced graph (e.g. fold BatchNorm). Default: unchanged."""
        return fx_model

    def insert_observers(self, converter: "FXConverter", fx_model: fx.GraphModule) -> fx.GraphModule:
        """Insert calibration observers. Default: none."""
        return fx_model

    def calibrate(self, converter: "FXConverter", fx_model: fx.GraphModule) -> fx.GraphModule:
        """Run calibration data through the observers. Default: no data."""
        return fx_model

    def replace(self, converter: "FXConverter", fx_model: fx.GraphModule) -> fx.GraphModule:
        """The core rewrite (activations -> spiking neurons, ...). Default: unchanged."""
        return fx_model

    def finalize(self, converter: "FXConverter", fx_model: fx.GraphModule) -> nn.Module:
        """Last step; its result is what ``FXConverter.convert`` returns. Default: ``fx_model``."""
        return fx_model


ConversionRecipe = FXConversionRecipe


class ModuleConversionRecipe:
    """Base class of module-tree recipes, run by :class:`~fastspike.ann2snn.ModuleConverter` without tracing:
    ``validate`` then ``convert_module``, which must return an ``nn.Module``."""

    def validate(self, converter: "ModuleConverter") -> None:
        """Check the recipe's arguments. Default: nothing."""
        return None

    def convert_module(self, converter: "ModuleConverter", ann: nn.Module) -> nn.Module:
        """Convert ``ann`` (or a copy) and return the result. Default: ``ann`` unchanged."""
        return ann
