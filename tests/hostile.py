"""The hostile-input corpus the test_bad_*.py files share, and the one assertion every refused case makes."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
from helpers import ROOT, run_cli

from mvit_deploy.artifact import MANIFEST_SCHEMA, tree_sha256
from mvit_deploy.bench.local import SCHEMA as BENCH_SCHEMA
from mvit_deploy.models.hub import WEIGHTS_DIR

MEMORY_CAP = 6 << 30  # bytes of address space; a refused input needs a few hundred MB
PHOTO = str(ROOT / "mvit_deploy/inputs/calibration/photos/chelsea.jpg")
FASHION_IMAGE = str(ROOT / "mvit_deploy/inputs/datasets/fashion_sample_ankle_boot.png")


def sidecar(artifact: str, target: str = "onnx", **overrides) -> dict:
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


def bench_result(**overrides) -> dict:
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


def bench_run(**overrides) -> dict:
    run = {
        "schema": BENCH_SCHEMA,
        "device": {"name": "host", "kind": "local", "cpu": "cpu", "cores": 2},
        "settings": {"threads": 2, "warmup": 5, "iters": 50, "interleaved": True},
        "results": [bench_result()],
        "skipped": [],
    }
    return {**run, **overrides}


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` pixels and holds none: a decompression bomb costs nothing to make."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def make_images(d: Path) -> None:
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


def make_corpus(d: Path) -> Path:
    """The bad files, made once: artifacts beside sidecars that are not theirs, broken JSON, images and weights."""
    import torch
    from safetensors.torch import load_file, save_file

    rng = np.random.default_rng(0)

    def artifact(name: str, data: bytes, manifest) -> None:
        (d / name).write_bytes(data)
        text = manifest if isinstance(manifest, str) else json.dumps(manifest)
        (d / name).with_suffix(".json").write_text(text)

    artifact("random.onnx", rng.bytes(100_000), sidecar("random.onnx"))
    artifact("empty.tflite", b"", sidecar("empty.tflite", target="tflite"))
    artifact("other.onnx", rng.bytes(1000), sidecar("mobilevit_s-onnx-fp32.onnx", model="mobilevit_s"))
    artifact("typed.onnx", rng.bytes(1000), sidecar("typed.tflite", target="tflite"))
    artifact("nan-manifest.onnx", rng.bytes(1000), json.dumps(sidecar("nan-manifest.onnx", bytes=float("nan"))))
    artifact("list-manifest.onnx", rng.bytes(1000), "[1, 2, 3]")
    artifact(
        "partial.onnx",
        rng.bytes(1000),
        {k: v for k, v in sidecar("partial.onnx").items() if k not in ("sha256", "input")},
    )
    (d / "lonely.onnx").write_bytes(rng.bytes(1000))

    (d / "bench-list.json").write_text("[]")
    (d / "bench-no-results.json").write_text(json.dumps({k: v for k, v in bench_run().items() if k != "results"}))
    (d / "bench-no-latency.json").write_text(
        json.dumps(bench_run(results=[{k: v for k, v in bench_result().items() if k != "latency_ms"}]))
    )
    (d / "bench-no-device.json").write_text(json.dumps({k: v for k, v in bench_run().items() if k != "device"}))
    (d / "bench-text-latency.json").write_text(
        json.dumps(bench_run(results=[bench_result(latency_ms={"mean": "fast", "std": 0.1})]))
    )
    (d / "bench-nan.json").write_text(json.dumps(bench_run(results=[bench_result(load_ms=float("nan"))])))
    (d / "binary.json").write_bytes(b"\xff\xfe" + rng.bytes(100))

    (d / "bomb.png").write_bytes(png_header(20000, 20000))
    (d / "big.png").write_bytes(png_header(10000, 10000))  # between Pillow's warning and its error
    make_images(d)
    (d / "random.pt").write_bytes(rng.bytes(4096))
    (d / "random.bin").write_bytes(rng.bytes(4096))
    # artifacts whose sidecar matches their bytes, so parity / eval get as far as reading images
    for name in ("matching.onnx",):
        (d / name).write_bytes(rng.bytes(1000))
        (d / name).with_suffix(".json").write_text(json.dumps(sidecar(name, sha256=tree_sha256(d / name))))
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


def refused_in_one_line(args, message, corpus, tmp_path):
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
