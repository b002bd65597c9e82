"""Flags and counts every command refuses in one line (exit 2) before any model is built.

Each case runs the console script under a memory cap in an empty folder (hostile.refused_in_one_line).
"""

from __future__ import annotations

import pytest
from hostile import PHOTO, refused_in_one_line

# (argv with {d} = the corpus (conftest.corpus) and {out} = a fresh output folder, words stderr must contain)
CASES = [
    pytest.param(["predict", PHOTO, "--input-size", "0"], "input size 0 is not a multiple of 64", id="predict-size-0"),
    pytest.param(
        ["predict", PHOTO, "--input-size", "32"], "input size 32 is not a multiple of 64", id="predict-size-32"
    ),
    pytest.param(
        ["predict", PHOTO, "--input-size", "96"], "input size 96 is not a multiple of 64", id="predict-size-96"
    ),
    pytest.param(["predict", PHOTO, "--input-size", "-64"], "not a multiple of 64", id="predict-size-negative"),
    pytest.param(["predict", PHOTO, "--input-size", "100000"], "above the maximum 1024", id="predict-size-100000"),
    pytest.param(
        ["predict", PHOTO, "--input-size", "2048", "--model", "mobilevit_s"],
        "would need about 36 GB",
        id="predict-size-2048",
    ),
    pytest.param(["predict", PHOTO, "--top", "0"], "--top 0 is out of range", id="predict-top-0"),
    pytest.param(["predict", PHOTO, "--top", "-2"], "--top -2 is out of range", id="predict-top-negative"),
    pytest.param(["predict", PHOTO, "--top", "abc"], "'abc' is not a valid integer", id="predict-top-text"),
    pytest.param(
        ["predict", PHOTO, "--num-classes", "0"], "--num-classes 0 is out of range", id="predict-num-classes-0"
    ),
    pytest.param(
        ["export", "--target", "onnx", "--input-size", "100000", "--out", "{out}"],
        "above the maximum 1024",
        id="export-size-100000",
    ),
    pytest.param(
        ["export", "--target", "onnx", "--input-size", "250", "--out", "{out}"],
        "not a multiple of 64",
        id="export-size-250",
    ),
    pytest.param(
        ["export", "--target", "onnx", "--input-size", "0", "--out", "{out}"], "input size 0", id="export-size-0"
    ),
    pytest.param(
        ["export", "--target", "onnx", "--threads", "0", "--out", "{out}"],
        "--threads 0 is out of range",
        id="export-threads-0",
    ),
    pytest.param(
        ["export", "--target", "onnx", "--threads", "-1", "--out", "{out}"],
        "--threads -1 is out of range",
        id="export-threads-negative",
    ),
    pytest.param(
        ["export", "--target", "onnx", "--num-classes", "0", "--out", "{out}"],
        "--num-classes 0",
        id="export-num-classes-0",
    ),
    pytest.param(
        ["export", "--target", "onnx", "--precision", "fp16", "--out", "{out}"],
        "onnx does not export precision fp16",
        id="export-onnx-fp16",
    ),
    pytest.param(
        ["export", "--target", "bogus", "--out", "{out}"], "Invalid value for '--target'", id="export-unknown-target"
    ),
    pytest.param(["export", "--target", "onnx"], "Missing option '--out'", id="export-no-out"),
    pytest.param(["parity", "{d}/random.onnx", "--n", "0"], "--n 0 is out of range", id="parity-n-0"),
    pytest.param(["parity", "{d}/random.onnx", "--threads", "0"], "--threads 0 is out of range", id="parity-threads-0"),
    pytest.param(["eval", "{d}/random.onnx", "--n", "0"], "--n 0 is out of range", id="eval-n-0"),
    pytest.param(
        ["eval", "{d}/empty.tflite", "--threads", "-1"], "--threads -1 is out of range", id="eval-threads-negative"
    ),
    pytest.param(["bench", "{d}/random.onnx", "--threads", "0"], "--threads 0 is out of range", id="bench-threads-0"),
    pytest.param(["bench", "{d}/random.onnx", "--iters", "1"], "--iters 1 is out of range", id="bench-iters-1"),
    pytest.param(
        ["bench", "{d}/random.onnx", "--iters", "1000001"], "--iters 1000001 is out of range", id="bench-iters-past-max"
    ),
    pytest.param(
        ["bench", "{d}/random.onnx", "--warmup", "-1"], "--warmup -1 is out of range", id="bench-warmup-negative"
    ),
    pytest.param(["bench", "{d}/random.onnx", "--device", "nowhere"], "unknown device", id="bench-unknown-device"),
    pytest.param(["quant-report", "{d}/random.onnx", "--n", "0"], "--n 0 is out of range", id="quant-report-n-0"),
    pytest.param(["quant-report", "{d}/random.onnx", "--top", "0"], "--top 0 is out of range", id="quant-report-top-0"),
    pytest.param(
        ["ane-check", "{d}/random.onnx", "--save-plan", "{out}/p.json"],
        "add --compute-plan",
        id="ane-check-save-without-plan",
    ),
    pytest.param(
        ["export", "--model", "mobilevit_xxs", "--target", "onnx", "--input-size", "128,192", "--out", "{out}"],
        "takes one input size",
        id="export-sizes-one-size-target",
    ),
    pytest.param(
        ["export", "--model", "mobilevit_xxs", "--target", "coreml", "--input-size", "128,x", "--out", "{out}"],
        "is not a size",
        id="export-sizes-not-numbers",
    ),
    pytest.param(
        ["export", "--model", "mobilevit_xxs", "--target", "coreml", "--input-size", "128,128", "--out", "{out}"],
        "lists a size twice",
        id="export-sizes-twice",
    ),
    pytest.param(
        ["export", "--model", "mobilevit_xxs", "--target", "coreml", "--input-size", "128,100", "--out", "{out}"],
        "is not a multiple of 64",
        id="export-sizes-not-64",
    ),
    pytest.param(["models", "--bogus"], "No such option '--bogus'", id="models-unknown-option"),
    pytest.param(["models", "extra"], "unexpected extra argument", id="models-extra-argument"),
    pytest.param(["bogus"], "No such command 'bogus'", id="unknown-command"),
    pytest.param(["--bogus"], "No such option '--bogus'", id="unknown-group-option"),
]


@pytest.mark.parametrize("args, message", CASES)
def test_bad_args_is_refused_in_one_line(args, message, corpus, tmp_path):
    refused_in_one_line(args, message, corpus, tmp_path)
