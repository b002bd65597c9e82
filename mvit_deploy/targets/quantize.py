"""What our int8 recipes share across runtimes (numpy only): which layers stay float, and
how activation ranges are calibrated.

Layers kept in float (:data:`FLOAT_MODULES`): the convolution stages before the first
MobileViT block. They run at 1/2 and 1/4 resolution with 16-64 channels, so they are
memory-bound and int8 buys no speed there, while their rounding carries about a third of
the int8 noise (measured on XXS, 48 held-out crops: ORT int8 31.5 dB -> 35.1 dB logits PSNR
and faster; S 28.3 -> 31.1 dB, still 0.73x of fp32 latency).

Activation ranges:

MobileViT's int8 fidelity hinges on how the range of each activation is chosen (measured on
XXS, logits PSNR on held-out photos): clipping to an MSE-optimal range loses the rare large
activations the network depends on (-3 dB); the exact min/max of a large calibration set is
set by a handful of outlier crops and coarsens every step (-2 dB going from 32 to 64 crops).
The 99.999th percentile over every calibration value is robust to both, and it is what
onnxruntime's Percentile calibrator computes; :class:`PercentileRanges` computes the same
thing for runtimes whose quantizer only knows min/max (ai-edge-quantizer), exactly, from
the most extreme values of each tensor rather than from a histogram.
"""

from __future__ import annotations

import math
import re

import numpy as np

from ..models.families import CONV_STAGES_FLOAT

PERCENTILE = 99.999
FLOAT_MODULES = CONV_STAGES_FLOAT  # v1's, the default; each family declares its own (families.py)


def float_modules(model: str) -> tuple[str, ...]:
    """The module prefixes a variant's int8 artifacts keep in float: its family's
    (``families.ModelFamily.float_modules``)."""
    from ..models.config import get_spec
    from ..models.families import get_family

    return get_family(get_spec(model).family).float_modules


def in_float_modules(module: str, prefixes=FLOAT_MODULES) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def module_path(traced: str) -> str:
    """A dotted module path as torch.export's ``nn_module_stack`` spells it -> as ``named_modules`` does."""
    return re.sub(r"^L__self___|^L\['self'\]\.", "", str(traced))


def fx_module_paths(program) -> dict[str, str]:
    """torch.export node name -> the dotted path of the module it runs in (from ``nn_module_stack``)."""
    out = {}
    for node in program.graph.nodes:
        stack = node.meta.get("nn_module_stack")
        if stack:
            out[node.name] = module_path(list(stack.values())[-1][0])
    return out


class PercentileRanges:
    """Per-tensor [lo, hi]: the (100-p)/2 and (100+p)/2 percentiles of all values seen.

    ``samples`` is the number of :meth:`add` calls each tensor will get; each call keeps only
    the ``k`` smallest and largest values, ``k`` being the tail size over all samples.
    """

    def __init__(self, samples: int, percentile: float = PERCENTILE):
        self.samples = samples
        self.tail = (100.0 - percentile) / 200.0
        self._low: dict[str, np.ndarray] = {}
        self._high: dict[str, np.ndarray] = {}
        self._count: dict[str, int] = {}

    def _k(self, size: int) -> int:
        return max(1, math.ceil(self.tail * size * self.samples))

    def add(self, name: str, values: np.ndarray) -> None:
        v = np.asarray(values, np.float32).ravel()
        k = min(self._k(v.size), v.size)
        low, high = self._low.get(name), self._high.get(name)
        # Only values beyond the current k-th extremes can enter the tails: one cheap
        # comparison over the tensor, then a partition of a few candidates.
        low_new = v if low is None else v[v < low.max()]
        high_new = v if high is None else v[v > high.min()]
        self._low[name] = _smallest(low_new if low is None else np.concatenate([low, low_new]), k)
        self._high[name] = -_smallest(-(high_new if high is None else np.concatenate([high, high_new])), k)
        self._count[name] = self._count.get(name, 0) + v.size

    def range(self, name: str) -> tuple[float, float]:
        """[lo, hi], widened to contain 0 (zero must be exactly representable)."""
        n = self._count[name]
        cut = max(0, math.floor(self.tail * n))  # values beyond the percentile on each side
        low = np.sort(self._low[name])
        high = np.sort(self._high[name])
        lo = float(low[min(cut, low.size - 1)])
        hi = float(high[max(high.size - 1 - cut, 0)])
        return min(lo, 0.0), max(hi, 0.0)

    def names(self) -> list[str]:
        return list(self._low)


def _smallest(v: np.ndarray, k: int) -> np.ndarray:
    return v if v.size <= k else np.partition(v, k - 1)[:k]
