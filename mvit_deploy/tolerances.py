"""The one table of parity bounds, keyed by target x precision, each with its reason.

A bound is (metric, comparison, value). Every metric is computed on logits of real
photos, artifact vs the PyTorch fp32 reference.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Bound:
    metric: str
    op: str  # "<=" or ">="
    value: float
    reason: str

    def holds(self, measured: float) -> bool:
        return measured <= self.value if self.op == "<=" else measured >= self.value

    def describe(self) -> str:
        return f"{self.metric} {self.op} {self.value:g}"


_FP32 = (Bound("max_abs", "<=", 1e-4, "fp32 graphs differ from PyTorch only by kernel summation order"),)
_FP16 = (
    Bound("top1_agreement", ">=", 1.0, "fp16 must never change a prediction on the photo set"),
    Bound("psnr_db", ">=", 45.0, "fp16 rounding of weights and activations: ~11-bit mantissa, measured 50-60 dB"),
)

# (target, precision) -> bounds; "*" matches every target.
BOUNDS: dict[tuple[str, str], tuple[Bound, ...]] = {
    ("*", "fp32"): _FP32,
    ("*", "fp16"): _FP16,
}


def bounds_for(target: str, precision: str) -> tuple[Bound, ...]:
    for key in ((target, precision), ("*", precision)):
        if key in BOUNDS:
            return BOUNDS[key]
    raise KeyError(f"no parity bounds for {target} {precision}")
