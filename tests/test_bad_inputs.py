"""Hostile and mistaken input (issue 11): every command refuses it with the documented exit code.

Each case runs the console script under a memory cap, in an empty directory, and must end with
exit 2, exactly one line on stderr naming the problem, nothing on stdout, no traceback, and
nothing written. All of them are refused before a model is built (the one exception, overflowing
weights, builds the 1.3 M-parameter XXS), so the corpus stays fast.

Below the corpus: the one image loader's rule per mode (16-bit, alpha, palette, CMYK, animated,
EXIF), and exports that are interrupted or fail parity leaving nothing behind.
"""

from __future__ import annotations

import dataclasses
import json
import re
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from helpers import ROOT, run_cli

from mvit_deploy.artifact import MANIFEST_SCHEMA, tree_sha256
from mvit_deploy.bench.local import SCHEMA as BENCH_SCHEMA
from mvit_deploy.models.hub import WEIGHTS_DIR

MEMORY_CAP = 6 << 30  # bytes of address space; a refused input needs a few hundred MB
PHOTO = str(ROOT / "mvit_deploy/inputs/calibration/photos/chelsea.jpg")
FASHION_IMAGE = str(ROOT / "mvit_deploy/inputs/datasets/fashion_sample_ankle_boot.png")


def _sidecar(artifact: str, target: str = "onnx", **overrides) -> dict:
    """A manifest as `mvit-deploy export` writes it, for a file other than the one beside it."""
    manifest = {
        "schema": MANIFEST_SCHEMA,
        "artifact": artifact,
        "model": "mobilevit_xxs",
        "domain": "fashion-mnist",
        "target": target,
        "precision": "fp32",
        "input": {
            "name": "image",
            "shape": [1, 3, 64, 64],
            "layout": "nchw",
            "dtype": "float32",
            "size": 64,
            "type": "tensor",
            "scale": 1 / 255,
            "channel_order": "RGB",
            "mean": [0, 0, 0],
            "std": [1, 1, 1],
            "preprocessing": {
                "channel_order": "RGB",
                "crop_pct": 1.0,
                "interpolation": "bilinear",
                "scale": 1 / 255,
                "mean": [0, 0, 0],
                "std": [1, 1, 1],
            },
        },
        "output": {"name": "logits", "shape": [1, 10], "dtype": "float32", "classes": 10, "labels": None},
        "checkpoint": {"layout": "timm", "path": None, "pretrained": "fashion", "sha256": "1" * 64},
        "versions": {"mvit-deploy": "0.1.0"},
        "sha256": "ef" * 32,  # the file export wrote; never the bytes beside it
        "bytes": 5_000_000,
    }
    return {**manifest, **overrides}


def _bench_result(**overrides) -> dict:
    result = {
        "artifact": "a.onnx",
        "model": "mobilevit_xxs",
        "target": "onnx",
        "precision": "fp32",
        "runtime": "onnxruntime",
        "input_size": 64,
        "bytes": 5_000_000,
        "load_ms": 40.0,
        "latency_ms": {"min": 1.0, "p50": 1.1, "p90": 1.2, "p99": 1.3, "mean": 1.1, "std": 0.1},
        "throughput_ips": 900.0,
        "rss_delta_mb": 30.0,
        "parity": None,
    }
    return {**result, **overrides}


def _bench_run(**overrides) -> dict:
    run = {
        "schema": BENCH_SCHEMA,
        "device": {"name": "host", "kind": "local", "cpu": "cpu", "cores": 2},
        "settings": {"threads": 2, "warmup": 5, "iters": 50, "interleaved": True},
        "results": [_bench_result()],
        "skipped": [],
    }
    return {**run, **overrides}


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` pixels and holds none: a decompression bomb costs nothing to make."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def _images(d: Path) -> None:
    """Image files and folders the one image loader must refuse by name."""
    from PIL import Image

    good = Image.new("RGB", (64, 64), (200, 30, 30))
    Image.new("RGB", (8, 8)).save(d / "tiny.png")
    Image.new("F", (64, 64)).save(d / "float.tif")
    good.save(d / "good.png")
    (d / "truncated.png").write_bytes((d / "good.png").read_bytes()[:60])
    for folder in ("calib-corrupt", "calib-tiny"):  # one good image, then one bad one: the bad one is named
        (d / folder).mkdir()
        good.save(d / folder / "a-good.jpg")
    (d / "calib-corrupt" / "not-an-image.jpg").write_text("a text file wearing a .jpg suffix\n")
    Image.new("RGB", (8, 8)).save(d / "calib-tiny" / "tiny.png")
    (d / "labeled" / "3").mkdir(parents=True)
    good.save(d / "labeled" / "3" / "good.png")
    (d / "labeled" / "3" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    (d / "gif-only").mkdir()
    good.save(d / "gif-only" / "only.gif")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """The bad files, made once: artifacts beside sidecars that are not theirs, broken JSON, images and weights."""
    import torch
    from safetensors.torch import load_file, save_file

    d = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)

    def artifact(name: str, data: bytes, manifest) -> None:
        (d / name).write_bytes(data)
        text = manifest if isinstance(manifest, str) else json.dumps(manifest)
        (d / name).with_suffix(".json").write_text(text)

    artifact("random.onnx", rng.bytes(100_000), _sidecar("random.onnx"))
    artifact("empty.tflite", b"", _sidecar("empty.tflite", target="tflite"))
    artifact("other.onnx", rng.bytes(1000), _sidecar("mobilevit_s-onnx-fp32.onnx", model="mobilevit_s"))
    artifact("typed.onnx", rng.bytes(1000), _sidecar("typed.tflite", target="tflite"))
    artifact("nan-manifest.onnx", rng.bytes(1000), json.dumps(_sidecar("nan-manifest.onnx", bytes=float("nan"))))
    artifact("list-manifest.onnx", rng.bytes(1000), "[1, 2, 3]")
    artifact(
        "partial.onnx",
        rng.bytes(1000),
        {k: v for k, v in _sidecar("partial.onnx").items() if k not in ("sha256", "input")},
    )
    (d / "lonely.onnx").write_bytes(rng.bytes(1000))

    (d / "bench-list.json").write_text("[]")
    (d / "bench-no-results.json").write_text(json.dumps({k: v for k, v in _bench_run().items() if k != "results"}))
    (d / "bench-no-latency.json").write_text(
        json.dumps(_bench_run(results=[{k: v for k, v in _bench_result().items() if k != "latency_ms"}]))
    )
    (d / "bench-no-device.json").write_text(json.dumps({k: v for k, v in _bench_run().items() if k != "device"}))
    (d / "bench-text-latency.json").write_text(
        json.dumps(_bench_run(results=[_bench_result(latency_ms={"mean": "fast", "std": 0.1})]))
    )
    (d / "bench-nan.json").write_text(json.dumps(_bench_run(results=[_bench_result(load_ms=float("nan"))])))
    (d / "binary.json").write_bytes(b"\xff\xfe" + rng.bytes(100))

    (d / "bomb.png").write_bytes(_png_header(20000, 20000))
    (d / "big.png").write_bytes(_png_header(10000, 10000))  # between Pillow's warning and its error
    _images(d)
    (d / "random.pt").write_bytes(rng.bytes(4096))
    (d / "random.bin").write_bytes(rng.bytes(4096))
    # artifacts whose sidecar matches their bytes, so parity / eval get as far as reading images
    for name in ("matching.onnx",):
        (d / name).write_bytes(rng.bytes(1000))
        (d / name).with_suffix(".json").write_text(json.dumps(_sidecar(name, sha256=tree_sha256(d / name))))
    (d / "not-an-image.jpg").write_text("a text file wearing a .jpg suffix\n")
    (d / "empty.png").write_bytes(b"")
    (d / "empty-folder").mkdir()
    (d / "text-only").mkdir()
    (d / "text-only" / "notes.txt").write_text("no images here\n")

    save_file({"stem.conv.weight": torch.tensor([[[[float("nan")]]]])}, str(d / "nan.safetensors"))
    (d / "random.safetensors").write_bytes(rng.bytes(4096))
    # finite weights whose logits overflow float32: 1e30 x 1e30 in the last two layers
    weights = {k: v.float() for k, v in load_file(str(WEIGHTS_DIR / "mobilevit_xxs-fashion_mnist.safetensors")).items()}
    weights["final_conv.bn.weight"] *= 1e30
    weights["head.fc.weight"] *= 1e30
    save_file(weights, str(d / "overflow.safetensors"))
    return d


# (argv with {d} = the corpus and {out} = a fresh output folder, words stderr must contain)
CASES = [
    # predict
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
        ["predict", "{d}/bomb.png"],
        "too large to decode safely: 400,000,000 pixels, the limit is 89,478,485",
        id="predict-decompression-bomb",
    ),
    pytest.param(
        ["predict", "{d}/big.png"],
        "10000 x 10000 = 100,000,000 pixels, the limit is 89,478,485",
        id="predict-above-pixel-limit",
    ),
    pytest.param(["predict", "{d}/tiny.png"], "is 8 x 8 pixels, smaller than 16 on a side", id="predict-tiny-image"),
    pytest.param(["predict", "{d}/float.tif"], "floating-point pixels (mode F)", id="predict-float-image"),
    pytest.param(["predict", "{d}/truncated.png"], "cannot read image", id="predict-truncated-png"),
    pytest.param(["predict", "{d}/gif-only"], "is a directory, not an image", id="predict-folder-as-image"),
    pytest.param(
        ["predict", PHOTO, "--weights", "{d}/random.pt"],
        "not a PyTorch checkpoint (neither a zip archive nor a pickle)",
        id="predict-random-pt",
    ),
    pytest.param(
        ["predict", PHOTO, "--weights", "{d}/random.bin"],
        "not a PyTorch checkpoint (neither a zip archive nor a pickle)",
        id="predict-random-bin",
    ),
    pytest.param(["predict", "{d}/not-an-image.jpg"], "cannot read image", id="predict-text-as-jpg"),
    pytest.param(["predict", "{d}/empty.png"], "cannot read image", id="predict-empty-png"),
    pytest.param(["predict", "{d}/missing.jpg"], "does not exist", id="predict-missing-image"),
    pytest.param(
        ["predict", PHOTO, "--weights", "{d}/nan.safetensors"],
        "holds NaN or infinite values in stem.conv.weight",
        id="predict-nan-weights",
    ),
    pytest.param(
        ["predict", PHOTO, "--weights", "{d}/random.safetensors"],
        "not a readable safetensors file",
        id="predict-random-weights",
    ),
    pytest.param(
        ["predict", FASHION_IMAGE, "--weights", "{d}/overflow.safetensors", "--json"],
        "logits hold 10 NaN or infinite",
        id="predict-overflow",
    ),
    pytest.param(
        ["predict", PHOTO, "--weights", "{d}/nan.safetensors", "--pretrained", "fashion"],
        "both a weights file and --pretrained",
        id="predict-two-weights",
    ),
    # export
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
        ["export", "--target", "onnx", "--precision", "int8", "--calib-samples", "0", "--out", "{out}"],
        "--calib-samples 0",
        id="export-calib-samples-0",
    ),
    pytest.param(
        ["export", "--target", "onnx", "--precision", "int8", "--calib", "{d}/empty-folder", "--out", "{out}"],
        "no images in",
        id="export-calib-empty",
    ),
    pytest.param(
        ["export", "--target", "onnx", "--precision", "int8", "--calib", "{d}/text-only", "--out", "{out}"],
        "no images in",
        id="export-calib-no-images",
    ),
    pytest.param(
        ["export", "--target", "onnx", "--precision", "int8", "--calib", "{d}/nowhere", "--out", "{out}"],
        "is not a directory",
        id="export-calib-missing",
    ),
    pytest.param(
        ["export", "--target", "onnx", "--precision", "int8", "--calib", "{d}/calib-corrupt", "--out", "{out}"],
        "calib-corrupt/not-an-image.jpg",
        id="export-calib-corrupt-file",
    ),
    pytest.param(
        ["export", "--target", "onnx", "--precision", "int8", "--calib", "{d}/calib-tiny", "--out", "{out}"],
        "calib-tiny/tiny.png is 8 x 8 pixels",
        id="export-calib-tiny-file",
    ),
    pytest.param(
        ["export", "--target", "onnx", "--weights", "{d}/random.pt", "--out", "{out}"],
        "not a PyTorch checkpoint",
        id="export-random-pt",
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
    pytest.param(
        ["export", "--target", "onnx", "--weights", "{d}/nan.safetensors", "--out", "{out}"],
        "holds NaN or infinite values",
        id="export-nan-weights",
    ),
    # parity
    pytest.param(
        ["parity", "{d}/random.onnx"], "random.onnx does not match its manifest (sha256", id="parity-random-onnx"
    ),
    pytest.param(["parity", "{d}/empty.tflite"], "empty.tflite does not match its manifest", id="parity-empty-tflite"),
    pytest.param(
        ["parity", "{d}/other.onnx"], "this manifest is not this artifact's", id="parity-other-models-manifest"
    ),
    pytest.param(
        ["parity", "{d}/typed.onnx"], "this manifest is not this artifact's", id="parity-other-targets-manifest"
    ),
    pytest.param(
        ["parity", "{d}/nan-manifest.onnx"], "is not valid JSON (NaN is not JSON)", id="parity-nan-in-manifest"
    ),
    pytest.param(["parity", "{d}/list-manifest.onnx"], "has schema 'list'", id="parity-list-manifest"),
    pytest.param(["parity", "{d}/partial.onnx"], "lacks input, sha256", id="parity-partial-manifest"),
    pytest.param(["parity", "{d}/lonely.onnx"], "has no manifest", id="parity-no-manifest"),
    pytest.param(["parity", "{d}/missing.onnx"], "does not exist", id="parity-missing"),
    pytest.param(["parity", "{d}/random.onnx", "--n", "0"], "--n 0 is out of range", id="parity-n-0"),
    pytest.param(["parity", "{d}/random.onnx", "--threads", "0"], "--threads 0 is out of range", id="parity-threads-0"),
    pytest.param(
        ["parity", "{d}/random.onnx", "--weights", "{d}/does-not-exist.safetensors"],
        "does not exist",
        id="parity-missing-weights",
    ),
    pytest.param(
        ["parity", "{d}/random.onnx", "--junit-xml", "{out}/parity.xml"],
        "does not match its manifest",
        id="parity-junit-not-written",
    ),
    pytest.param(
        ["parity", "{d}/matching.onnx", "--images", "{d}/calib-corrupt"],
        "calib-corrupt/not-an-image.jpg",
        id="parity-images-corrupt-file",
    ),
    pytest.param(["parity", "{d}/matching.onnx", "--images", "{d}/text-only"], "no images in", id="parity-images-none"),
    pytest.param(
        ["parity", "{d}/matching.onnx", "--images", "{d}/calib-tiny"],
        "smaller than 16 on a side",
        id="parity-images-tiny",
    ),
    # eval
    pytest.param(["eval", "{d}/random.onnx", "--n", "0"], "--n 0 is out of range", id="eval-n-0"),
    pytest.param(
        ["eval", "{d}/random.onnx", "--data", "fashion-mnist:subset"],
        "does not match its manifest",
        id="eval-random-onnx",
    ),
    pytest.param(
        ["eval", "{d}/empty.tflite", "--threads", "-1"], "--threads -1 is out of range", id="eval-threads-negative"
    ),
    pytest.param(["eval", "{d}/other.onnx"], "this manifest is not this artifact's", id="eval-other-models-manifest"),
    pytest.param(
        ["eval", "{d}/matching.onnx", "--data", "{d}/labeled"], "labeled/3/broken.png", id="eval-data-corrupt-file"
    ),
    pytest.param(["eval", "{d}/matching.onnx", "--data", "{d}/text-only"], "no images in", id="eval-data-no-images"),
    # bench
    pytest.param(["bench", "{d}/random.onnx"], "does not match its manifest", id="bench-random-onnx"),
    pytest.param(["bench", "{d}/empty.tflite"], "does not match its manifest", id="bench-empty-tflite"),
    pytest.param(["bench", "{d}/random.onnx", "--threads", "0"], "--threads 0 is out of range", id="bench-threads-0"),
    pytest.param(["bench", "{d}/random.onnx", "--iters", "1"], "--iters 1 is out of range", id="bench-iters-1"),
    pytest.param(
        ["bench", "{d}/random.onnx", "--warmup", "-1"], "--warmup -1 is out of range", id="bench-warmup-negative"
    ),
    pytest.param(["bench", "{d}/random.onnx", "--device", "nowhere"], "unknown device", id="bench-unknown-device"),
    pytest.param(
        ["bench", "{d}/random.onnx", "--json", "{out}/bench.json"],
        "does not match its manifest",
        id="bench-json-not-written",
    ),
    # report
    pytest.param(
        ["report", "{d}/bench-list.json", "--out", "{out}"],
        "is not a bench result (schema 'list')",
        id="report-json-list",
    ),
    pytest.param(["report", "{d}/bench-no-results.json", "--out", "{out}"], "no results list", id="report-no-results"),
    pytest.param(
        ["report", "{d}/bench-no-latency.json", "--out", "{out}"],
        "results[0] has no latency_ms",
        id="report-no-latency",
    ),
    pytest.param(["report", "{d}/bench-no-device.json", "--out", "{out}"], "no device", id="report-no-device"),
    pytest.param(
        ["report", "{d}/bench-text-latency.json", "--out", "{out}"],
        "latency_ms needs the numbers",
        id="report-text-latency",
    ),
    pytest.param(
        ["report", "{d}/bench-nan.json", "--out", "{out}"], "not valid JSON (NaN is not JSON)", id="report-nan"
    ),
    pytest.param(["report", "{d}/binary.json", "--out", "{out}"], "is not valid JSON", id="report-binary"),
    pytest.param(["report", "{d}/missing.json", "--out", "{out}"], "does not exist", id="report-missing"),
    pytest.param(["report", "{d}/empty-folder", "--out", "{out}"], "is a directory", id="report-folder"),
    # quant-report
    pytest.param(["quant-report", "{d}/random.onnx"], "does not match its manifest", id="quant-report-random-onnx"),
    pytest.param(
        ["quant-report", "{d}/other.onnx"], "this manifest is not this artifact's", id="quant-report-other-manifest"
    ),
    pytest.param(["quant-report", "{d}/random.onnx", "--n", "0"], "--n 0 is out of range", id="quant-report-n-0"),
    pytest.param(["quant-report", "{d}/random.onnx", "--top", "0"], "--top 0 is out of range", id="quant-report-top-0"),
    # ane-check
    pytest.param(["ane-check", "{d}/random.onnx"], "is not an .mlpackage directory", id="ane-check-not-mlpackage"),
    pytest.param(["ane-check", "{d}/missing.mlpackage"], "is not an .mlpackage directory", id="ane-check-missing"),
    pytest.param(["ane-check", "{d}/empty-folder"], "is not an .mlpackage directory", id="ane-check-folder"),
    pytest.param(
        ["ane-check", "{d}/random.onnx", "--plan", "{d}/binary.json"],
        "is not a recorded compute plan",
        id="ane-check-plan-binary",
    ),
    pytest.param(
        ["ane-check", "{d}/random.onnx", "--plan", "{d}/bench-list.json"],
        "is not a recorded compute plan",
        id="ane-check-plan-list",
    ),
    pytest.param(
        ["ane-check", "{d}/random.onnx", "--save-plan", "{out}/p.json"],
        "add --compute-plan",
        id="ane-check-save-without-plan",
    ),
    # export: several sizes
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
    # models, and the group itself
    pytest.param(["models", "--bogus"], "No such option '--bogus'", id="models-unknown-option"),
    pytest.param(["models", "extra"], "unexpected extra argument", id="models-extra-argument"),
    pytest.param(["bogus"], "No such command 'bogus'", id="unknown-command"),
    pytest.param(["--bogus"], "No such option '--bogus'", id="unknown-group-option"),
]


@pytest.mark.parametrize("args, message", CASES)
def test_bad_input_is_refused_in_one_line(args, message, corpus, tmp_path):
    out = tmp_path / "out"
    argv = [a.replace("{d}", str(corpus)).replace("{out}", str(out)) for a in args]
    result = run_cli(*argv, cwd=tmp_path, memory_cap=MEMORY_CAP)
    assert result.returncode == 2, (result.returncode, result.stdout[-500:], result.stderr[-2000:])
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr, result.stderr
    problem, _, fix = result.stderr.partition(" — ")
    assert len(fix.split()) >= 2, f"the message names no fix: {result.stderr}"
    assert result.stdout == ""
    assert not out.exists() or not any(out.iterdir()), f"left behind: {sorted(p.name for p in out.iterdir())}"
    assert [p.name for p in tmp_path.iterdir() if p.name != "out"] == [], "wrote into the working directory"


def test_top_level_help_documents_the_exit_codes():
    result = run_cli("--help")
    assert result.returncode == 0
    assert re.search(r"0\s+ok", result.stdout) and re.search(r"1\s+a bound or check failed", result.stdout)
    assert re.search(r"2\s+usage or input error", result.stdout) and re.search(r"3\s+internal error", result.stdout)


def test_an_unexpected_exception_is_exit_3_with_its_traceback_in_a_log(monkeypatch, tmp_path):
    from click.testing import CliRunner

    from mvit_deploy.faces import cli
    from mvit_deploy.models import card

    def crash():
        raise RuntimeError("a bug\nover two lines")

    monkeypatch.setattr(card, "all_cards", crash)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    result = CliRunner().invoke(cli.main, ["models", "--json"])
    assert result.exit_code == 3
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert (
        "error: internal error: RuntimeError: a bug over two lines — please report it; full traceback in "
        in result.stderr
    )
    log = Path(result.stderr.rsplit("full traceback in ", 1)[1].strip())
    assert log.parent == tmp_path and "Traceback" in log.read_text() and "crash" in log.read_text()


def test_non_finite_artifact_logits_fail_parity_with_valid_json():
    """An artifact that emits NaN fails its bounds by name; the JSON report still parses (null, not NaN)."""
    from mvit_deploy.pipeline.parity import judge

    ref = np.random.default_rng(0).normal(size=(4, 10)).astype(np.float32)
    got = ref.copy()
    got[1, 3] = np.nan
    report = judge("a.onnx", "onnx", "fp32", ref, got, "onnxruntime", "mobilevit")
    assert not report.passed and report.failures[0] == "logits: 1 of 40 values from the artifact are NaN or infinite"
    text = json.dumps(report.to_dict(), allow_nan=False)
    assert json.loads(text)["metrics"]["max_abs"] is None


def test_eval_json_of_one_image_has_no_infinite_interval():
    from mvit_deploy.pipeline.evaluate import EvalReport, EvalRow, _drop_ci95

    ci = _drop_ci95(np.array([True]), np.array([False]))
    assert ci == (float("-inf"), float("inf"))
    row = EvalRow("a.onnx", "onnx", "fp32", {"top1": 1.0}, {"top1": 0.0}, 100.0, ci, 0.0, None, True)
    assert json.loads(json.dumps(EvalReport("one image", 1, [row]).to_dict(), allow_nan=False))["rows"][0][
        "drop_ci95"
    ] == [None, None]


def test_the_corpus_covers_every_command():
    from mvit_deploy.faces.cli import main

    covered = {p.values[0][0] for p in CASES}
    assert set(main.commands) <= covered, f"no bad-input case for {sorted(set(main.commands) - covered)}"


def test_a_sidecar_copied_with_its_renamed_artifact_still_reads(tmp_path):
    """The sha256 check must not refuse the pair a user renamed together."""
    from mvit_deploy.artifact import read_manifest, tree_sha256

    art = tmp_path / "renamed.onnx"
    art.write_bytes(b"not a real model, but the bytes the manifest was written for")
    (tmp_path / "renamed.json").write_text(
        json.dumps(_sidecar("mobilevit_xxs-onnx-fp32.onnx", sha256=tree_sha256(art)))
    )
    assert read_manifest(art).model == "mobilevit_xxs"


# ---- the one image loader (mvit_deploy/inputs/images.py): every mode decodes to the picture it shows ----


def test_16_bit_greyscale_decodes_to_the_same_input_as_its_8_bit_version(tmp_path):
    """Pillow's own convert("L") clips 16-bit values to 255 (an all-white image); the loader scales them."""
    from PIL import Image

    from mvit_deploy.inputs.preprocess import preprocess
    from mvit_deploy.models.config import HF_PREPROCESSING

    ramp = np.tile(np.arange(256, dtype=np.uint8), (256, 1))  # [256, 256] left-to-right gradient
    Image.fromarray(ramp, "L").save(tmp_path / "g8.png")
    Image.fromarray(ramp.astype(np.uint16) * 257).save(tmp_path / "g16.png")  # 0..65535, the same picture
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    x8, x16 = (preprocess(tmp_path / f, 64, HF_PREPROCESSING) for f in ("g8.png", "g16.png"))
    np.testing.assert_array_equal(x8, x16)
    assert x16.max() - x16.min() > 0.8 and 0.45 < x16.mean() < 0.55  # a ramp (less the crop), not a white square


@pytest.mark.parametrize(
    "mode, make, expected",
    [
        ("RGBA transparent", lambda im: im.new("RGBA", (32, 32), (255, 0, 0, 0)), (255, 255, 255)),  # alpha on white
        ("RGBA opaque", lambda im: im.new("RGBA", (32, 32), (255, 0, 0, 255)), (255, 0, 0)),
        ("LA half", lambda im: im.new("LA", (32, 32), (0, 128)), (127, 127, 127)),
        ("CMYK", lambda im: im.new("CMYK", (32, 32), (0, 255, 255, 0)), (255, 0, 0)),
        ("I;16 mid grey", lambda im: im.new("I;16", (32, 32), 32896), (128, 128, 128)),
        ("1 bit", lambda im: im.new("1", (32, 32), 1), (255, 255, 255)),
    ],
)
def test_every_image_mode_becomes_the_rgb_it_shows(mode, make, expected):
    from PIL import Image

    from mvit_deploy.inputs.images import to_rgb

    rgb = to_rgb(make(Image))
    assert rgb.mode == "RGB" and tuple(np.asarray(rgb)[0, 0]) == expected, (mode, np.asarray(rgb)[0, 0])


def test_palette_transparency_animation_and_exif_rotation(tmp_path):
    from PIL import Image

    from mvit_deploy.inputs.images import load_image

    pal = Image.new("P", (32, 32), 0)
    pal.putpalette([0, 0, 255] * 256)
    pal.save(tmp_path / "p.gif", transparency=0)
    assert tuple(np.asarray(load_image(tmp_path / "p.gif"))[0, 0]) == (255, 255, 255)  # transparent index on white
    frames = [Image.new("RGB", (32, 32), c) for c in ((255, 0, 0), (0, 255, 0))]
    for suffix in ("gif", "webp"):
        frames[0].save(tmp_path / f"anim.{suffix}", save_all=True, append_images=frames[1:], lossless=True)
        assert tuple(np.asarray(load_image(tmp_path / f"anim.{suffix}"))[0, 0]) == (255, 0, 0), (
            suffix
        )  # the first frame
    wide = Image.new("RGB", (40, 20), (0, 0, 0))
    exif = wide.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    wide.save(tmp_path / "rot.jpg", exif=exif)
    assert load_image(tmp_path / "rot.jpg").size == (20, 40)


def test_folder_scanning_and_the_single_file_loader_accept_the_same_suffixes(tmp_path):
    from PIL import Image

    from mvit_deploy.inputs.images import IMAGE_SUFFIXES, image_files, load_image

    for suffix in IMAGE_SUFFIXES:
        Image.new("RGB", (32, 32), (1, 2, 3)).save(tmp_path / f"img{suffix}")
        assert load_image(tmp_path / f"img{suffix}").size == (32, 32)
    (tmp_path / "._img.jpg").write_bytes(b"macOS resource fork")  # hidden: skipped, not refused
    assert [p.suffix for p in image_files(tmp_path, check=True)] == sorted(IMAGE_SUFFIXES, key=lambda s: f"img{s}")
    only_gif = tmp_path / "gif-only"
    only_gif.mkdir()
    Image.new("RGB", (32, 32)).save(only_gif / "a.gif")
    assert image_files(only_gif) == [only_gif / "a.gif"]


# ---- interrupted exports: nothing partial left behind ----


def test_a_stale_staging_entry_of_a_dead_process_is_swept(tmp_path):
    import os
    import subprocess
    import time

    from mvit_deploy.artifact import sweep_staging

    dead = subprocess.Popen(["true"])
    dead.wait()  # its pid now names no running process (reuse within the test is harmless: then nothing is swept)
    old = time.time() - 3600
    stale = tmp_path / f".mobilevit_xxs-onnx-fp32.onnx.tmp-{dead.pid}-abc123"
    stale.mkdir()
    (stale / "mobilevit_xxs-onnx-fp32.onnx").write_bytes(b"half an artifact")
    legacy = tmp_path / ".mobilevit_xxs-onnx-fp32.json.tmp-k2j4h5"  # before pids were in the name
    legacy.write_text("{}")
    live = tmp_path / f".other.onnx.tmp-{os.getppid()}-xyz"  # a running process's: kept even if old
    live.mkdir()
    fresh = tmp_path / f".new.onnx.tmp-{dead.pid}-new"  # written after this process started: kept
    fresh.mkdir()
    mine = [tmp_path / ".hidden-notes.tmp", tmp_path / "model.onnx.tmp-1-a", tmp_path / "result.onnx"]  # not our names
    for p in mine:
        p.write_text("user data")
    for p in (stale, legacy, live, *mine):
        os.utime(p, (old, old))
    removed = sweep_staging(tmp_path, started=time.time() - 60)
    assert sorted(removed) == sorted([stale, legacy])
    assert (
        not stale.exists()
        and not legacy.exists()
        and live.exists()
        and fresh.exists()
        and all(p.exists() for p in mine)
    )


def test_a_write_sweeps_stale_staging_of_the_same_file_only(tmp_path):
    """bench --json, parity --junit-xml and report go through ``staged``: a SIGKILLed write of the same file is
    swept."""
    import os
    import subprocess
    import time

    from mvit_deploy.artifact import staged

    dead = subprocess.Popen(["true"])
    dead.wait()
    old = time.time() - 3600
    stale = tmp_path / f".bench.json.tmp-{dead.pid}-abc123"
    stale.mkdir()
    other = tmp_path / f".report.md.tmp-{dead.pid}-abc123"  # another file's: left for its own next write
    other.mkdir()
    for p in (stale, other):
        os.utime(p, (old, old))
    with staged(tmp_path / "bench.json") as tmp:
        tmp.write_text("{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == [other.name, "bench.json"]


def test_sigterm_during_a_staged_write_removes_the_staging_entry(tmp_path):
    """Every command runs inside ``interruptible``: SIGTERM unwinds through ``staged`` like Ctrl-C."""
    import os
    import signal

    from mvit_deploy.artifact import Terminated, interruptible, staged

    final = tmp_path / "report.html"
    with pytest.raises(Terminated) as e, interruptible(), staged(final) as tmp:
        tmp.write_text("half a report")
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):  # the handler runs at the next bytecode boundary
            pass
    assert e.value.signum == signal.SIGTERM
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, "the previous handler is restored"


def test_output_folder_created_by_a_failed_run_is_removed(tmp_path):
    from mvit_deploy.artifact import output_folder

    with pytest.raises(RuntimeError), output_folder(tmp_path / "new"):
        raise RuntimeError("conversion failed")
    assert not (tmp_path / "new").exists()
    (tmp_path / "kept").mkdir()
    with pytest.raises(RuntimeError), output_folder(tmp_path / "kept"):
        raise RuntimeError("conversion failed")
    assert (tmp_path / "kept").is_dir(), "a folder the user made is never removed"


@pytest.mark.parametrize("signame, code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_an_interrupted_export_leaves_nothing(signame, code, tmp_path):
    """Ctrl-C or SIGTERM while the converter writes into its staging folder: exit 128+n, no staging, no --out."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "out"
    exe = Path(sys.executable).with_name("mvit-deploy")
    proc = subprocess.Popen(
        [str(exe), "export", "--target", "onnx", "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not list(out.glob(".*.tmp-*")):
        time.sleep(0.05)
    assert proc.poll() is None, f"export ended before it could be interrupted: {proc.communicate()[1][-500:]}"
    time.sleep(0.5)  # the converter is at work
    proc.send_signal(getattr(signal, signame))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err[-1000:]
    assert "Traceback" not in err and err.strip().endswith("interrupted")
    assert not out.exists(), f"left behind: {sorted(p.name for p in out.rglob('*'))}"


@pytest.mark.parametrize("wrapper", ["RuntimeError from it", "UsageError while handling it"])
def test_a_ctrl_c_a_converter_wrapped_is_still_an_interrupt(wrapper, monkeypatch, tmp_path, capsys):
    """torch.export turns a Ctrl-C inside it into TorchExportError (seen at 1 s into the ONNX export):
    that must exit 130 with "interrupted" and leave nothing, not an "internal error, please report"."""
    from mvit_deploy.errors import UsageError
    from mvit_deploy.faces.cli import main
    from mvit_deploy.pipeline import export as export_module

    def converter_wrapping_ctrl_c(opts, on_step=None):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as e:
            if wrapper == "RuntimeError from it":
                raise RuntimeError("Failed to export the model with torch.export") from e
            raise UsageError("the converter failed", "see above") from RuntimeError("wrapped")

    monkeypatch.setattr(export_module, "export", converter_wrapping_ctrl_c)
    with pytest.raises(SystemExit) as done:
        main.main(["export", "--target", "onnx", "--out", str(tmp_path / "out")], standalone_mode=True)
    err = capsys.readouterr().err
    assert done.value.code == 130 and err.strip() == "interrupted", err
    assert not (tmp_path / "out").exists()


def test_a_failed_export_keeps_no_artifact_unless_asked(monkeypatch, tmp_path):
    """Parity FAIL: nothing written (and no --out this run created), unless keep_failed."""
    from mvit_deploy import targets as runtimes
    from mvit_deploy.pipeline.export import export
    from mvit_deploy.targets import ExportOptions, get_target
    from mvit_deploy.targets.base import Converted

    target = type(get_target("onnx"))

    def fake_convert(self, model, example, opts, dest, calibration=None):
        dest.write_bytes(b"a converted model")
        return Converted()

    class WrongRunner:
        runtime = "fake"

        def __call__(self, x):
            return np.random.default_rng(0).normal(size=(len(x), 10)).astype(np.float32)

    monkeypatch.setattr(target, "convert", fake_convert)
    monkeypatch.setattr(target, "check", lambda self, path: None)
    monkeypatch.setattr(runtimes, "load_runner", lambda path, manifest, threads=None: WrongRunner())
    opts = ExportOptions(
        model="mobilevit_xxs", target="onnx", out_dir=tmp_path / "out", pretrained="fashion", parity_n=4
    )  # shipped: loads fast
    result = export(opts)
    assert not result.kept and not result.parity.passed
    assert not (tmp_path / "out").exists()
    kept = export(dataclasses.replace(opts, keep_failed=True))
    assert kept.kept and kept.artifact.read_bytes() == b"a converted model" and kept.manifest_path.exists()
    assert json.loads(kept.manifest_path.read_text())["parity"]["passed"] is False
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "mobilevit_xxs-onnx-fp32.json",
        "mobilevit_xxs-onnx-fp32.onnx",
    ]


def test_hub_weights_not_cached_fail_fast_when_offline_or_unreachable(monkeypatch, tmp_path):
    import socket
    import time

    from huggingface_hub import constants

    from mvit_deploy.errors import CheckpointError
    from mvit_deploy.models import hub
    from mvit_deploy.models.config import get_spec

    source = get_spec("mobilevit_xxs").source("hf")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(
        CheckpointError,
        match="not in the Hugging Face cache and HF_HUB_OFFLINE is set.*hf download apple/mobilevit-xx-small",
    ):
        hub.download(source)

    def no_route(*args, **kwargs):
        raise OSError(101, "Network is unreachable")

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(socket, "create_connection", no_route)
    for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    start = time.monotonic()
    with pytest.raises(CheckpointError, match="huggingface.co cannot be reached \\(Network is unreachable\\)"):
        hub.download(source)
    assert time.monotonic() - start < 2.0


def test_the_library_refuses_the_counts_the_cli_refuses(tmp_path):
    """A library caller meets the same one-line rules as the CLI's flags (they are the library's, the CLI asks it)."""
    from mvit_deploy.bench import BenchRequest, check_request
    from mvit_deploy.errors import UsageError
    from mvit_deploy.pipeline.evaluate import evaluate
    from mvit_deploy.pipeline.export import plan_exports
    from mvit_deploy.pipeline.parity import parity
    from mvit_deploy.pipeline.quant_report import quant_report
    from mvit_deploy.targets import ExportOptions

    calls = {
        "--threads 0": lambda: plan_exports(
            ExportOptions(model="mobilevit_xxs", target="onnx", out_dir=tmp_path, threads=0)
        ),
        "--calib-samples 0": lambda: plan_exports(
            ExportOptions(model="mobilevit_xxs", target="onnx", out_dir=tmp_path, calib_samples=0)
        ),
        "--iters 1": lambda: check_request(BenchRequest(artifacts=("a.onnx",), iters=1)),
        "--warmup -1": lambda: check_request(BenchRequest(artifacts=("a.onnx",), warmup=-1)),
        "--n 0": lambda: parity("missing.onnx", n=0),
        "--workers 0": lambda: evaluate(["missing.onnx"], workers=0),
    }
    for expected, call in calls.items():
        with pytest.raises(UsageError, match=f"{expected} is out of range"):
            call()
    with pytest.raises(UsageError, match="--n 0 is out of range"):
        quant_report("missing.onnx", n=0)


def test_a_ctrl_c_a_converter_swallows_still_stops_the_export(monkeypatch, tmp_path):
    """The ONNX exporter can catch the KeyboardInterrupt (torch.export wraps it; the exporter retries another
    strategy and finishes): the interrupt still wins, and nothing is written. Seen as exit 0 under CI load."""
    import signal

    from mvit_deploy.artifact import interruptible
    from mvit_deploy.pipeline.export import export
    from mvit_deploy.targets import ExportOptions, get_target
    from mvit_deploy.targets.base import Converted

    target = type(get_target("onnx"))

    interrupts = [signal.SIGINT]  # one Ctrl-C, during the first export only

    def swallowing_convert(self, model, example, opts, dest, calibration=None):
        try:  # Ctrl-C arrives: the handler installed for this run runs (called here, so the test is not timing)
            if interrupts:
                signal.getsignal(signal.SIGINT)(interrupts.pop(), None)
        except KeyboardInterrupt:
            pass  # what a converter's fallback does
        dest.write_bytes(b"converted anyway")
        return Converted()

    monkeypatch.setattr(target, "convert", swallowing_convert)
    monkeypatch.setattr(target, "check", lambda self, path: None)
    opts = ExportOptions(model="mobilevit_xxs", target="onnx", out_dir=tmp_path / "out", pretrained="fashion")
    with pytest.raises(KeyboardInterrupt), interruptible():
        export(opts, run_parity=False)
    assert not (tmp_path / "out").exists()
    export(opts, run_parity=False)  # the next run, with no interrupt, writes as usual
    assert (tmp_path / "out" / "mobilevit_xxs-onnx-fp32.onnx").read_bytes() == b"converted anyway"
