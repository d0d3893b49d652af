"""SpikingJelly 2.0's ANN2SNN executors: :class:`FXConverter` (trace with torch.fx, then run a recipe's steps) and
:class:`ModuleConverter` (run a module-tree recipe). The algorithms live in the recipes
(``fastspike.ann2snn.recipes``).

    snn = FXConverter(RateCodingRecipe(dataloader=loader, mode="max")).convert(ann)

Unlike SpikingJelly, the ANN is copied first, so the converted model never shares modules or parameters with it
and the ANN's training flags and device are left as they were.
"""
from __future__ import annotations

import copy
from typing import Optional, Union

import torch
import torch.nn as nn

from .recipes.base import FXConversionRecipe, ModuleConversionRecipe
from .recipes.transformer_td_equivalent import TransformerTDEquivalentRecipe
from .trace import trace_ann

__all__ = ["FXConverter", "ModuleConverter"]

#: SpikingJelly's string recipes and why fastspike refuses each
_STRING_RECIPES = {
    "rate_coding": "the rate_coding recipe needs parameters: pass RateCodingRecipe(dataloader=...)",
    "sta_transformer": "the sta_transformer recipe needs parameters: pass STATransformerRecipe(dataloader=..., "
                       "time_steps=...)",
}


def _resolve_device(ann: nn.Module, device) -> torch.device:
    if device is not None:
        return torch.device(device)
    p = next(ann.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _copy(ann: nn.Module, who: str) -> nn.Module:
    if not isinstance(ann, nn.Module):
        raise TypeError(f"{who}.convert: ann must be a torch.nn.Module, but got {type(ann).__name__}.")
    return copy.deepcopy(ann)


class FXConverter:
    """Executor of FX-graph recipes (SpikingJelly's ``FXConverter``; ``fastspike.ann2snn.Converter``, SpikingJelly's
    other name for it, is a subclass).

    :param recipe: an :class:`~fastspike.ann2snn.FXConversionRecipe` (such as ``RateCodingRecipe(...)``).
        SpikingJelly's string names are refused with the reason.
    :param device: where the conversion runs; ``None``: the ANN's parameter device (CPU without parameters).
    """

    def __init__(self, recipe: Union[str, FXConversionRecipe], device: Optional[Union[torch.device, str]] = None):
        self.recipe = self._resolve_recipe(recipe)
        self.device = device

    @staticmethod
    def _resolve_recipe(recipe) -> FXConversionRecipe:
        if isinstance(recipe, FXConversionRecipe):
            return recipe
        if isinstance(recipe, ModuleConversionRecipe):
            raise TypeError(f"FXConverter: recipe must be an FXConversionRecipe, but got the module-tree recipe "
                            f"{type(recipe).__name__}; run it with ModuleConverter.")
        if recipe == "transformer_td_equivalent":
            return TransformerTDEquivalentRecipe()
        if isinstance(recipe, str):
            reason = _STRING_RECIPES.get(recipe)
            if reason is not None:
                raise ValueError(f"FXConverter: recipe={recipe!r}: {reason}.")
            raise ValueError(f"FXConverter: unknown recipe name {recipe!r}; pass a recipe object such as "
                             "RateCodingRecipe(dataloader=...).")
        raise TypeError(f"FXConverter: recipe must be an FXConversionRecipe instance, but got {type(recipe).__name__}.")

    def convert(self, ann: nn.Module) -> nn.Module:
        """Run the recipe's steps on a copy of ``ann``: validate, before_trace, torch.fx trace (moved to the
        device), after_trace, insert_observers, calibrate, replace, finalize; no gradients are recorded."""
        configured = self.device
        ann = _copy(ann, "FXConverter")
        try:
            self.device = _resolve_device(ann, configured)
            with torch.no_grad():
                recipe = self.recipe
                recipe.validate(self)
                ann = recipe.before_trace(self, ann)
                fx_model = trace_ann(ann).to(self.device)
                fx_model = recipe.after_trace(self, fx_model)
                fx_model = recipe.insert_observers(self, fx_model)
                fx_model = recipe.calibrate(self, fx_model)
                fx_model = recipe.replace(self, fx_model)
                return recipe.finalize(self, fx_model)
        finally:
            self.device = configured

    __call__ = convert


class ModuleConverter:
    """Executor of module-tree recipes (SpikingJelly's ``ModuleConverter``): ``validate``, then ``convert_module``
    on a copy of the ANN without tracing; the result is moved to ``device``.

    :param recipe: a :class:`~fastspike.ann2snn.ModuleConversionRecipe`.
    :param device: as for :class:`FXConverter`.
    """

    def __init__(self, recipe: ModuleConversionRecipe, device: Optional[Union[torch.device, str]] = None):
        if isinstance(recipe, FXConversionRecipe):
            raise TypeError(f"ModuleConverter: recipe must be a ModuleConversionRecipe, but got the FX recipe "
                            f"{type(recipe).__name__}; run it with FXConverter.")
        if not isinstance(recipe, ModuleConversionRecipe):
            raise TypeError(f"ModuleConverter: recipe must be a ModuleConversionRecipe instance, but got "
                            f"{type(recipe).__name__}.")
        self.recipe = recipe
        self.device = device

    def convert(self, ann: nn.Module) -> nn.Module:
        configured = self.device
        ann = _copy(ann, "ModuleConverter")
        try:
            self.device = _resolve_device(ann, configured)
            with torch.no_grad():
                self.recipe.validate(self)
                converted = self.recipe.convert_module(self, ann)
                if not isinstance(converted, nn.Module):
                    raise TypeError(f"ModuleConverter: {type(self.recipe).__name__}.convert_module must return a "
                                    f"torch.nn.Module, but returned {type(converted).__name__}.")
                return converted.to(self.device)
        finally:
            self.device = configured

    __call__ = convert
