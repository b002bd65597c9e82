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

_INT8 = (
    Bound("top1_agreement", ">=", 0.98, "int8 may flip a near-tie, not a clear prediction (held-out photos)"),
    Bound("psnr_db", ">=", 35.0, "8-bit weights/activations: ~6 dB per bit, minus outlier channels"),
)

# (target, precision) -> bounds; "*" matches every target.
BOUNDS: dict[tuple[str, str], tuple[Bound, ...]] = {
    ("*", "fp32"): _FP32,
    ("*", "fp16"): _FP16,
    ("*", "int8"): _INT8,  # onnx / tflite: weights and activations int8
    ("coreml", "int8"): _INT8,  # weight-only int8, fp16 activations
    ("coreml", "w8a8"): _INT8,
}


def bounds_for(target: str, precision: str) -> tuple[Bound, ...]:
    for key in ((target, precision), ("*", precision)):
        if key in BOUNDS:
            return BOUNDS[key]
    raise KeyError(f"no parity bounds for {target} {precision}")
