"""The one table of bounds, keyed by target x precision, each with the measurement behind it.

A parity bound is (metric, comparison, value) on the logits of the parity set, artifact vs
the PyTorch fp32 reference (``metrics.fidelity``). Errors are relative to the reference's
peak |logit| so that one bound serves a random fixture (peak ~1) and a trained model
(peak ~15). A changed top-1 counts only where the reference margin is decisive: larger
than ``decisive_margin`` x peak, a margin chosen well above the precision's measured
noise (``Rule.margin_reason``). ``eval`` adds an accuracy bound per precision.

Measurements: ``python benchmarks/noise.py`` (this repo) prints every number quoted here;
it varies threads (1, 2), ORT graph optimisation (disabled, basic, all) and
``ATEN_CPU_CAPABILITY`` (avx2, default) for the reference, on the trained Fashion-MNIST
models (XXS, S) and the 1000-class photo fixture.
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


@dataclass(frozen=True)
class Rule:
    bounds: tuple[Bound, ...]
    decisive_margin: float  # reference top-1/top-2 margin, as a fraction of peak |logit|
    margin_reason: str
    accuracy: Bound | None = None  # for `eval` on a labeled set: the drop in top-1 points


# Measured with benchmarks/noise.py on 2026-11-23 (AMD EPYC, AVX-512), 128 Fashion-MNIST test
# images for the trained models, 64 photo crops for the fixture; "worst" is over every setting
# (torch default/avx2 x 1/2 threads as reference; ORT 3 opt levels x 1/2 threads; LiteRT 1/2 threads).
# ARM figures: benchmarks/noise.py --board on 2026-12-07, the emulated Cortex-A76 board of scripts/aarch64_board.sh
# (onnxruntime 1.31.1 and ai-edge-litert 2.3.0's own aarch64 kernels, 1/2 threads), trained XXS and v2-0.5.
_FP32 = Rule(
    (
        Bound(
            "max_rel",
            "<=",
            1e-4,
            "summation order only: worst max_rel 2.97e-6 (XXS), 1.87e-6 (S), 1.79e-6 (fixture) over 24 ORT, "
            "8 LiteRT and 4 Core ML-executor settings; torch vs torch 1.5e-7; on the emulated Cortex-A76 board "
            "(NEON kernels, 1/2 threads) 2.97e-6 (XXS ORT), 1.74e-6 (XXS LiteRT). 1e-4 leaves 30x for other CPUs "
            "(Apple AMX); a broken conversion lands 195x above it or more: dropped classifier bias 0.0195 "
            "(trained XXS), transposed weight 0.47, swapped RGB/BGR 0.81 (photos) — tests/test_verdicts.py",
        ),
        Bound(
            "decisive_top1_agreement",
            ">=",
            1.0,
            "fp32 must not change a decisive prediction; measured: 0 flips in any setting",
        ),
    ),
    2e-4,
    "a flip needs a margin < 2 x max_rel; 2e-4 is 2x the max_rel bound, 70x the measured 2.97e-6",
    Bound(
        "accuracy_drop_points",
        "<=",
        0.05,
        "fp32 changes no top-1 on 10,000 test images (measured 0.00 points, XXS and S, ONNX Runtime and LiteRT)",
    ),
)
_FP16 = Rule(
    (
        Bound(
            "psnr_db",
            ">=",
            45.0,
            "fp16 rounding of weights and activations: measured 67.6 dB (XXS), 72.9 (S), 61.9 (fixture) in the "
            "Core ML executor; 45 dB leaves 17 dB for the Neural Engine's own fp16 accumulation",
        ),
        Bound("decisive_top1_agreement", ">=", 1.0, "fp16 must not change a decisive prediction; measured: 0 flips"),
    ),
    0.05,
    "fp16 worst max_rel 3.5e-3 (XXS), 3.9e-3 (S), 5.0e-3 (fixture); a flip needs a margin < 2 x max_rel = 0.01; "
    "0.05 is 5x that, for accumulation on the Neural Engine that the executor does not model",
    Bound(
        "accuracy_drop_points",
        "<=",
        0.2,
        "fp16: measured drop 0.03 points on 10,000 test images (XXS, Core ML executor); "
        "0.2 leaves room for the Neural Engine's accumulation",
    ),
)
_INT8 = Rule(
    (
        Bound(
            "psnr_db",
            ">=",
            35.0,
            "8-bit weights/activations on the trained models: measured 44.7-47.9 dB (ONNX Runtime / LiteRT int8), "
            "55.2-56.7 (Core ML weight-only int8), 42.3-43.1 (Core ML w8a8); 35 dB is what the best recipe "
            "reaches on the untrained photo fixture (34.4-35.1) and 7 dB below the worst trained artifact",
        ),
        Bound(
            "decisive_top1_agreement",
            ">=",
            0.99,
            "int8 may flip a near-tie, not a clear prediction; measured: 0 decisive flips",
        ),
    ),
    0.16,
    "int8 worst max_rel 0.0787 (XXS, ONNX Runtime: the same on an AVX-512 VNNI x86 host and on the emulated Cortex-A76 "
    "board, whose logits are 6.0e-3 apart; 0.045 on an AVX2-only x86), 0.055 (S); LiteRT int8 0.0448 on both CPUs "
    "(benchmarks/noise.py --board, 2026-12-07); a flip needs a margin < 2 x max_rel = 0.157; 0.16 is above that; the "
    "largest flipped margin measured is 0.129 (XXS ORT int8, x86 and ARM alike), the fixture's 0.08",
    Bound(
        "accuracy_drop_points",
        "<=",
        0.5,
        "the issue's bound; the best published W8A8 MobileViT PTQ loses 0.64 points (HyQ, ImageNet XS); "
        "measured on 10,000 test images: see README, int8",
    ),
)

# precision -> rule, the same for every target (int8 is weights and activations on ONNX Runtime and
# LiteRT, weight-only on Core ML; w8a8 is Core ML's weights-and-activations int8).
RULES: dict[str, Rule] = {"fp32": _FP32, "fp16": _FP16, "int8": _INT8, "w8a8": _INT8}

# Rules of a model family whose own measurements differ from the rows above (measured on MobileViT v1);
# the family's registry entry (models/families.py, ``ModelFamily.rules``) says which apply to it.
# Measured with benchmarks/noise.py --models v2-050-fixture --precisions fp32 on 2026-11-24 (AMD EPYC,
# AVX-512): MobileViT v2's fp32 noise is 12-40x v1's, because its GroupNorm(1) and separable attention
# reduce over whole [C, P, N] volumes and seeded weights amplify it (torch fp32 vs fp64: 7.1e-6, v1
# 1.1e-6); v1's 1e-4 is below what a seeded v2-1.0 measures on ExecuTorch. A trained v2 is as quiet as v1.
FP32_V2 = Rule(
    (
        Bound(
            "max_rel",
            "<=",
            1e-3,
            "MobileViT v2, summation order only: worst max_rel 3.72e-5 (ORT, 24 settings), 2.86e-5 (LiteRT, 8), "
            "8.31e-5 (Core ML executor, 4), 8.77e-5 (ExecuTorch, 8); torch vs torch 9.4e-6 (v2-0.5 photo fixture; "
            "the trained v2-0.5: 1.39e-6, 1.20e-6, 6.22e-6, 1.06e-6, seeded HF v2-1.0 ExecuTorch 2.3e-4; the trained "
            "v2-0.5 on the emulated Cortex-A76 board: 1.58e-6 ORT, 1.07e-6 LiteRT). "
            "1e-3 is 4.3x the worst; broken conversions land 2.8x above it or more: GroupNorm eps 1e-5 -> 1e-2 "
            "2.83e-3 (one block's norm), dropped last FFN bias 0.0147, dropped classifier bias 0.365, transposed "
            "attention "
            "projection 1.23, swapped RGB/BGR 1.26 (v2-0.5 fixture, photos)",
        ),
        Bound(
            "decisive_top1_agreement",
            ">=",
            1.0,
            "fp32 must not change a decisive prediction; measured: 0 flips in any setting",
        ),
    ),
    2e-3,
    "a flip needs a margin < 2 x max_rel; 2e-3 is 2x the v2 max_rel bound, 8.7x the measured 2.3e-4",
    _FP32.accuracy,
)
# fp16, measured the same way: the trained v2-0.5 keeps 68.8 dB in the Core ML executor (max_rel 7.4e-3),
# but seeded v2 weights amplify early-layer rounding ~20 dB more than trained ones: the v2-0.5 photo
# fixture 47.5 dB (max_rel 4.77e-2), a seeded HF v2-1.0 with re-estimated BatchNorm 44.9 dB (3.8e-2);
# torch's own half precision gives that model 43.4 dB, and one early stage alone in fp16 49.7-56 dB.
FP16_V2 = Rule(
    (
        Bound(
            "psnr_db",
            ">=",
            38.0,
            "MobileViT v2 fp16: measured 68.8 dB (trained v2-0.5), 47.5 (v2-0.5 photo fixture), 44.9 (seeded "
            "v2-1.0; torch half gives it 43.4) in the Core ML executor; 38 dB is 7 dB below the worst correct "
            "artifact, and an fp16 overflow or a stage computed wrongly lands far below it",
        ),
        Bound(
            "decisive_top1_agreement",
            ">=",
            1.0,
            "fp16 must not change a decisive prediction; measured: 0 decisive flips",
        ),
    ),
    0.15,
    "v2 fp16 worst max_rel 4.77e-2 (seeded weights); a flip needs a margin < 2 x max_rel = 0.095; 0.15 is above that "
    "(the fixture's flips had margins of at most 0.0031)",
    _FP16.accuracy,
)
