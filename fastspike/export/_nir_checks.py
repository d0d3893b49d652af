"""Validation of NIR nodes before :func:`fastspike.export.from_nir` builds modules from them.

Every parameter of every node is checked here, at import time, with one named error per problem: the node
name, its NIR type, the field, the value found and what is expected. Checked:

* arrays: numeric (``TypeError`` otherwise), finite (no NaN, no inf), the right rank (Affine/Linear weights 2-D,
  Conv1d 3-D, Conv2d 4-D) and lengths (a bias has one entry per output channel; a neuron's per-neuron
  parameters all have one shape);
* integers (stride, dilation, groups, kernel size, padding, flatten dims): integral, within range
  (stride, dilation, kernel >= 1; padding >= 0; pooling padding at most half the kernel; groups divide the
  output channels; ``padding='same'`` only with stride 1);
* time constants positive (LIF/CubaLIF), input gains positive (IF/LIF);
* node names: strings, and edges: pairs of node names.

Shapes *between* nodes (a Linear fed the wrong number of features, a per-neuron parameter that does not match
the layer before) are checked afterwards by one dry run of the imported graph on a zero sample of the Input
node's shape (``_nir_import``), which names the node that fails.

The same checks run on nodes read from an HDF5 file (plain dicts of arrays) when ``nir.read`` itself fails, so
a broken file names its broken node instead of surfacing NIR's bare ``AssertionError``/``OverflowError``.
"""
from __future__ import annotations

import numbers
from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np

__all__ = ["check_node", "check_names", "NEURON_FIELDS"]

#: the per-neuron parameters of the neuron types fastspike imports
NEURON_FIELDS: Dict[str, Tuple[str, ...]] = {
    "IF": ("r", "v_threshold", "v_reset"),
    "LIF": ("tau", "r", "v_leak", "v_threshold", "v_reset"),
    "CubaLIF": ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "v_reset", "w_in"),
}
_MISSING = object()


class _Node:
    """Reads the fields of one NIR node, whether a ``nir`` dataclass or a dict read from HDF5."""

    def __init__(self, name: str, kind: str, source):
        self.name, self.kind, self.source = name, kind, source

    def where(self, field: Optional[str] = None) -> str:
        text = f"from_nir: node {self.name!r} ({self.kind})"
        return f"{text}: '{field}'" if field else text

    def get(self, field: str, default=_MISSING):
        if isinstance(self.source, dict):
            value = self.source.get(field, default)
        else:
            value = getattr(self.source, field, default)
        if value is _MISSING:
            raise ValueError(f"{self.where()} has no '{field}' field.")
        if isinstance(value, bytes):
            value = value.decode("utf8", "replace")
        return value

    def array(self, field: str, ndim: Optional[int] = None, optional: bool = False) -> Optional[np.ndarray]:
        value = self.get(field, None if optional else _MISSING)
        if value is None:
            if optional:
                return None
            raise ValueError(f"{self.where(field)} is None; expected a numeric array.")
        if isinstance(value, (str, dict)):
            raise TypeError(f"{self.where(field)} must be a numeric array, but got {type(value).__name__} {value!r}.")
        try:
            a = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"{self.where(field)} must be a numeric array, but got {type(value).__name__} "
                            f"{_short(value)}.") from None
        if ndim is not None and a.ndim != ndim:
            raise ValueError(f"{self.where(field)} must be a {ndim}-D array, but has shape {a.shape}.")
        bad = ~np.isfinite(a)
        if bad.any():
            first = a[bad].flat[0]
            raise ValueError(f"{self.where(field)} has {int(bad.sum())} non-finite value(s) (e.g. {first}) out of "
                             f"{a.size}; every NIR parameter must be a finite number.")
        return a

    def ints(self, field: str, n: int, minimum: int, allow_str: Sequence[str] = ()) -> Tuple:
        """``n`` integers >= minimum from a scalar or a length-1 / length-n sequence (or one of ``allow_str``)."""
        value = self.get(field)
        if isinstance(value, str):
            if value in allow_str:
                return (value,)
            expected = f"one of {list(allow_str)} or " if allow_str else ""
            raise ValueError(f"{self.where(field)} is {value!r}; expected {expected}{n} integer(s) >= {minimum}.")
        try:
            a = np.atleast_1d(np.asarray(value, dtype=np.float64))
        except (TypeError, ValueError):
            raise TypeError(f"{self.where(field)} must be integer(s), but got {type(value).__name__} "
                            f"{_short(value)}.") from None
        if a.ndim != 1 or a.size not in (1, n):
            raise ValueError(f"{self.where(field)} must be one integer or {n}, but got {_short(value)} "
                             f"(shape {a.shape}).")
        if not (np.all(np.isfinite(a)) and np.all(a == np.round(a))):
            raise ValueError(f"{self.where(field)} must be integer(s), but got {_short(value)}.")
        if np.any(a < minimum):
            raise ValueError(f"{self.where(field)} must be >= {minimum}, but got {_short(value)}.")
        if np.any(a > 2 ** 31 - 1):
            raise ValueError(f"{self.where(field)} is out of range: {_short(value)}.")
        out = tuple(int(v) for v in a)
        return out * n if len(out) == 1 else out


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_names(nodes, edges) -> None:
    """Node names are strings; edges are (source, target) pairs of names the graph has."""
    if not isinstance(nodes, dict):
        raise TypeError(f"from_nir: the graph's nodes must be a dict of name -> node, but got {type(nodes).__name__}.")
    for key in nodes:
        if not isinstance(key, str):
            raise TypeError(f"from_nir: node names must be strings, but the graph has a node named {key!r} "
                            f"({type(key).__name__}).")
    try:
        edge_list = list(edges)
    except TypeError:
        raise TypeError(f"from_nir: the graph's edges must be a list of (source, target) pairs, but got "
                        f"{type(edges).__name__}.") from None
    for edge in edge_list:
        if isinstance(edge, (str, bytes)) or not hasattr(edge, "__len__") or len(edge) != 2:
            raise ValueError(f"from_nir: every edge must be a (source, target) pair of node names, but got "
                             f"{_short(edge)}.")
        for k in edge:
            if not isinstance(k, str) or k not in nodes:
                raise ValueError(f"from_nir: edge {_short(tuple(edge))} refers to node {k!r}, which the graph does "
                                 "not have.")


def _check_linear(node: _Node, with_bias: bool) -> None:
    w = node.array("weight", ndim=2)
    if with_bias:
        b = node.array("bias")
        if b.shape != (w.shape[0],):
            raise ValueError(f"{node.where('bias')} has shape {b.shape}, but the weight {w.shape} has {w.shape[0]} "
                             f"output(s); expected shape ({w.shape[0]},).")


def _check_conv(node: _Node, nd: int) -> None:
    w = node.array("weight", ndim=nd + 2)
    b = node.array("bias", optional=True)
    out_ch = w.shape[0]
    if b is not None and b.shape != (out_ch,):
        raise ValueError(f"{node.where('bias')} has shape {b.shape}, but the weight {w.shape} has {out_ch} output "
                         f"channel(s); expected shape ({out_ch},).")
    if 0 in w.shape:
        raise ValueError(f"{node.where('weight')} has shape {w.shape}; a convolution needs at least one channel and "
                         "a non-empty kernel.")
    stride = node.ints("stride", nd, 1)
    node.ints("dilation", nd, 1)
    pad = node.ints("padding", nd, 0, allow_str=("same", "valid"))
    if pad == ("same",) and any(s != 1 for s in stride):
        raise ValueError(f"{node.where('padding')} is 'same' with stride {stride}; 'same' padding needs stride 1.")
    (groups,) = node.ints("groups", 1, 1)
    if out_ch % groups:
        raise ValueError(f"{node.where('groups')} is {groups}, which does not divide the {out_ch} output channels.")
    shape = node.get("input_shape", None)
    if shape is not None:
        node.ints("input_shape", nd, 1)


def _check_pool(node: _Node) -> None:
    k = node.ints("kernel_size", 2, 1)
    node.ints("stride", 2, 1)
    p = node.ints("padding", 2, 0)
    if any(pi > ki // 2 for pi, ki in zip(p, k)):
        raise ValueError(f"{node.where('padding')} is {p} with kernel {k}; pooling padding must be at most half "
                         "the kernel size.")


def _check_flatten(node: _Node) -> None:
    for field in ("start_dim", "end_dim"):
        value = node.get(field)
        ok = isinstance(value, numbers.Integral) or (isinstance(value, np.ndarray) and value.size == 1 and
                                                     np.issubdtype(value.dtype, np.integer))
        if not ok or isinstance(value, bool):
            raise TypeError(f"{node.where(field)} must be an integer, but got {_short(value)}.")


def _check_neuron(node: _Node) -> Dict[str, np.ndarray]:
    arrays = {f: node.array(f) for f in NEURON_FIELDS[node.kind]}
    shapes = {f: a.shape for f, a in arrays.items()}
    if len(set(shapes.values())) > 1:
        listing = ", ".join(f"{f} {s}" for f, s in shapes.items())
        raise ValueError(f"{node.where()} has per-neuron parameters of different shapes ({listing}); every "
                         "parameter of a NIR neuron has one shape, one entry per neuron.")
    for f in ("tau", "tau_syn", "tau_mem"):
        if f in arrays and np.any(arrays[f] <= 0):
            raise ValueError(f"{node.where(f)} has non-positive value(s) (min {arrays[f].min():g}); a time "
                             "constant must be positive.")
    if node.kind in ("IF", "LIF") and np.any(arrays["r"] <= 0):
        raise ValueError(f"{node.where('r')} has non-positive value(s) (min {arrays['r'].min():g}); fastspike "
                         "imports positive input resistances only.")
    return arrays


def _check_scale(node: _Node) -> None:
    node.array("scale")


_CHECKS: Dict[str, Callable[[_Node], object]] = {
    "Affine": lambda n: _check_linear(n, True),
    "Linear": lambda n: _check_linear(n, False),
    "Conv1d": lambda n: _check_conv(n, 1),
    "Conv2d": lambda n: _check_conv(n, 2),
    "AvgPool2d": _check_pool,
    "SumPool2d": _check_pool,
    "Flatten": _check_flatten,
    "IF": _check_neuron,
    "LIF": _check_neuron,
    "CubaLIF": _check_neuron,
    "Scale": _check_scale,
}


def check_node(name: str, kind: str, source) -> None:
    """Check every parameter of one node (a ``nir`` node object, or a dict read from HDF5) of NIR type ``kind``.

    Types fastspike does not import are left to the caller (which names them)."""
    check = _CHECKS.get(kind)
    if check is not None:
        check(_Node(name, kind, source))
