"""Speck / DYNAP-CNN chip limits (see the table in ``fastspike.export.speck``), the report that lists every
violated limit, the per-core limit check and the assignment of logical cores to the 9 physical cores by
bipartite matching on their kernel and neuron memories."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, List, Optional

if TYPE_CHECKING:
    from .build import SpeckCore

__all__ = ["SPECK_LIMITS", "Violation", "SpeckReport", "check_core", "assign_cores"]

KI = 1024
SPECK_LIMITS = {
    "cores": 9,
    "kernel_size": 16,
    "strides": (1, 2, 4, 8),
    "padding": 7,
    "pooling": (1, 2, 4),
    "channels": 1024,
    "input_size": 128,
    "output_size": 64,
    "fan_out": 2,
    "kernel_memory": (16 * KI, 16 * KI, 16 * KI, 32 * KI, 32 * KI, 64 * KI, 64 * KI, 16 * KI, 16 * KI),
    "neuron_memory": (64 * KI, 64 * KI, 64 * KI, 32 * KI, 32 * KI, 16 * KI, 16 * KI, 16 * KI, 16 * KI),
    "weight_bits": 8,
    "state_bits": 16,
}


@dataclass
class Violation:
    layer: str
    constraint: str
    limit: object
    value: object

    def __str__(self):
        return f"layer '{self.layer}': {self.constraint}: limit {self.limit}, got {self.value}"


@dataclass
class SpeckReport:
    violations: List[Violation] = field(default_factory=list)
    cores: List["SpeckCore"] = field(default_factory=list)
    assignment: Optional[List[int]] = None  # physical core of each logical core

    @property
    def ok(self) -> bool:
        return not self.violations

    def add(self, layer, constraint, limit, value):
        self.violations.append(Violation(str(layer), constraint, limit, value))

    def __str__(self):
        if self.ok:
            return f"Speck check passed: {len(self.cores)} core(s), assignment {self.assignment}"
        return "Speck check failed:\n" + "\n".join(f"  - {v}" for v in self.violations)


def check_core(core: "SpeckCore", report: SpeckReport):
    L = SPECK_LIMITS
    f, c, kh, kw = core.weight.shape
    name = core.name
    if kh != kw:
        report.add(name, "square kernel", "kx == ky", f"{kh}x{kw}")
    if max(kh, kw) > L["kernel_size"]:
        report.add(name, "kernel size", f"<= {L['kernel_size']}", f"{kh}x{kw}")
    for s in core.stride:
        if s not in L["strides"]:
            report.add(name, "stride", L["strides"], core.stride)
            break
    if max(core.padding) > L["padding"]:
        report.add(name, "padding", f"<= {L['padding']}", core.padding)
    if core.dilation != (1, 1):
        report.add(name, "dilation", "1", core.dilation)
    if core.in_shape[0] > L["channels"]:
        report.add(name, "input channels", f"<= {L['channels']}", core.in_shape[0])
    if f > L["channels"]:
        report.add(name, "output channels", f"<= {L['channels']}", f)
    if max(core.in_shape[1:]) > L["input_size"]:
        report.add(name, "input size", f"<= {L['input_size']}x{L['input_size']}",
                   f"{core.in_shape[1]}x{core.in_shape[2]}")
    if max(core.neuron_shape[1:]) > L["output_size"]:
        report.add(core.neuron, "output (neuron map) size", f"<= {L['output_size']}x{L['output_size']}",
                   f"{core.neuron_shape[1]}x{core.neuron_shape[2]}")
    if core.kernel_memory > max(L["kernel_memory"]):
        report.add(name, "kernel memory (entries)", max(L["kernel_memory"]), core.kernel_memory)
    if core.neuron_memory > max(L["neuron_memory"]):
        report.add(core.neuron, "neuron memory (entries)", max(L["neuron_memory"]), core.neuron_memory)


def assign_cores(cores: List["SpeckCore"]) -> Optional[List[int]]:
    """Bipartite matching of logical cores to the 9 physical cores by kernel and neuron memory."""
    km, nm = SPECK_LIMITS["kernel_memory"], SPECK_LIMITS["neuron_memory"]
    fits = [[j for j in range(len(km)) if c.kernel_memory <= km[j] and c.neuron_memory <= nm[j]] for c in cores]
    owner = [-1] * len(km)

    def augment(i, seen):
        for j in fits[i]:
            if j in seen:
                continue
            seen.add(j)
            if owner[j] < 0 or augment(owner[j], seen):
                owner[j] = i
                return True
        return False

    for i in range(len(cores)):
        if not augment(i, set()):
            return None
    result = [0] * len(cores)
    for j, i in enumerate(owner):
        if i >= 0:
            result[i] = j
    return result
