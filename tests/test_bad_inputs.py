"""Hostile and mistaken input (issue 11): every command refuses it with the documented exit code.

Each case runs the console script under a memory cap, in an empty directory, and must end with
exit 2, exactly one line on stderr naming the problem, nothing on stdout, no traceback, and
nothing written. All of them are refused before a model is built (the one exception, overflowing
weights, builds the 1.3 M-parameter XXS), so the corpus stays fast.
"""

from __future__ import annotations

import json
import re
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, run_cli
from mvit_deploy.artifact import MANIFEST_SCHEMA
from mvit_deploy.bench.local import SCHEMA as BENCH_SCHEMA
from mvit_deploy.models.hub import WEIGHTS_DIR

MEMORY_CAP = 6 << 30  # bytes of address space; a refused input needs a few hundred MB
PHOTO = str(ROOT / "mvit_deploy/calibration/photos/chelsea.jpg")
FASHION_IMAGE = str(ROOT / "mvit_deploy/datasets/fashion_sample_ankle_boot.png")


def _sidecar(artifact: str, target: str = "onnx", **overrides) -> dict:
    """A manifest as `mvit-deploy export` writes it, for a file other than the one beside it."""
    manifest = {
        "schema": MANIFEST_SCHEMA, "artifact": artifact, "model": "mobilevit_xxs", "domain": "fashion-mnist", "target": target,
        "precision": "fp32",
        "input": {"name": "image", "shape": [1, 3, 64, 64], "layout": "nchw", "dtype": "float32", "size": 64, "type": "tensor", "scale": 1 / 255,
                  "channel_order": "RGB", "mean": [0, 0, 0], "std": [1, 1, 1],
                  "preprocessing": {"channel_order": "RGB", "crop_pct": 1.0, "interpolation": "bilinear", "scale": 1 / 255, "mean": [0, 0, 0], "std": [1, 1, 1]}},
        "output": {"name": "logits", "shape": [1, 10], "dtype": "float32", "classes": 10, "labels": None},
        "checkpoint": {"layout": "timm", "path": None, "pretrained": "fashion", "sha256": "1" * 64},
        "versions": {"mvit-deploy": "0.1.0"},
        "sha256": "ef" * 32,  # the file export wrote; never the bytes beside it
        "bytes": 5_000_000,
    }  # fmt: skip
    return {**manifest, **overrides}


def _bench_result(**overrides) -> dict:
    result = {"artifact": "a.onnx", "model": "mobilevit_xxs", "target": "onnx", "precision": "fp32", "runtime": "onnxruntime", "input_size": 64,
              "bytes": 5_000_000, "load_ms": 40.0, "latency_ms": {"min": 1.0, "p50": 1.1, "p90": 1.2, "p99": 1.3, "mean": 1.1, "std": 0.1},
              "throughput_ips": 900.0, "rss_delta_mb": 30.0, "parity": None}  # fmt: skip
    return {**result, **overrides}


def _bench_run(**overrides) -> dict:
    run = {"schema": BENCH_SCHEMA, "device": {"name": "host", "kind": "local", "cpu": "cpu", "cores": 2},
           "settings": {"threads": 2, "warmup": 5, "iters": 50, "interleaved": True}, "results": [_bench_result()], "skipped": []}  # fmt: skip
    return {**run, **overrides}


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` pixels and holds none: a decompression bomb costs nothing to make."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


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
    artifact("partial.onnx", rng.bytes(1000), {k: v for k, v in _sidecar("partial.onnx").items() if k not in ("sha256", "input")})
    (d / "lonely.onnx").write_bytes(rng.bytes(1000))

    (d / "bench-list.json").write_text("[]")
    (d / "bench-no-results.json").write_text(json.dumps({k: v for k, v in _bench_run().items() if k != "results"}))
    (d / "bench-no-latency.json").write_text(json.dumps(_bench_run(results=[{k: v for k, v in _bench_result().items() if k != "latency_ms"}])))
    (d / "bench-no-device.json").write_text(json.dumps({k: v for k, v in _bench_run().items() if k != "device"}))
    (d / "bench-text-latency.json").write_text(json.dumps(_bench_run(results=[_bench_result(latency_ms={"mean": "fast", "std": 0.1})])))
    (d / "bench-nan.json").write_text(json.dumps(_bench_run(results=[_bench_result(load_ms=float("nan"))])))
    (d / "binary.json").write_bytes(b"\xff\xfe" + rng.bytes(100))

    (d / "bomb.png").write_bytes(_png_header(20000, 20000))
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
    pytest.param(["predict", PHOTO, "--input-size", "32"], "input size 32 is not a multiple of 64", id="predict-size-32"),
    pytest.param(["predict", PHOTO, "--input-size", "96"], "input size 96 is not a multiple of 64", id="predict-size-96"),
    pytest.param(["predict", PHOTO, "--input-size", "-64"], "not a multiple of 64", id="predict-size-negative"),
    pytest.param(["predict", PHOTO, "--input-size", "100000"], "above the maximum 1024", id="predict-size-100000"),
    pytest.param(["predict", PHOTO, "--input-size", "2048", "--model", "mobilevit_s"], "would need about 36 GB", id="predict-size-2048"),
    pytest.param(["predict", PHOTO, "--top", "0"], "--top 0 is out of range", id="predict-top-0"),
    pytest.param(["predict", PHOTO, "--top", "-2"], "--top -2 is out of range", id="predict-top-negative"),
    pytest.param(["predict", PHOTO, "--top", "abc"], "'abc' is not a valid integer", id="predict-top-text"),
    pytest.param(["predict", PHOTO, "--num-classes", "0"], "--num-classes 0 is out of range", id="predict-num-classes-0"),
    pytest.param(["predict", "{d}/bomb.png"], "too large to decode safely", id="predict-decompression-bomb"),
    pytest.param(["predict", "{d}/not-an-image.jpg"], "cannot read image", id="predict-text-as-jpg"),
    pytest.param(["predict", "{d}/empty.png"], "cannot read image", id="predict-empty-png"),
    pytest.param(["predict", "{d}/missing.jpg"], "does not exist", id="predict-missing-image"),
    pytest.param(["predict", PHOTO, "--weights", "{d}/nan.safetensors"], "holds NaN or infinite values in stem.conv.weight", id="predict-nan-weights"),
    pytest.param(["predict", PHOTO, "--weights", "{d}/random.safetensors"], "not a readable safetensors file", id="predict-random-weights"),
    pytest.param(["predict", FASHION_IMAGE, "--weights", "{d}/overflow.safetensors", "--json"], "logits hold 10 NaN or infinite", id="predict-overflow"),
    pytest.param(["predict", PHOTO, "--weights", "{d}/nan.safetensors", "--pretrained", "fashion"], "both a weights file and --pretrained", id="predict-two-weights"),
    # export
    pytest.param(["export", "--target", "onnx", "--input-size", "100000", "--out", "{out}"], "above the maximum 1024", id="export-size-100000"),
    pytest.param(["export", "--target", "onnx", "--input-size", "250", "--out", "{out}"], "not a multiple of 64", id="export-size-250"),
    pytest.param(["export", "--target", "onnx", "--input-size", "0", "--out", "{out}"], "input size 0", id="export-size-0"),
    pytest.param(["export", "--target", "onnx", "--threads", "0", "--out", "{out}"], "--threads 0 is out of range", id="export-threads-0"),
    pytest.param(["export", "--target", "onnx", "--threads", "-1", "--out", "{out}"], "--threads -1 is out of range", id="export-threads-negative"),
    pytest.param(["export", "--target", "onnx", "--num-classes", "0", "--out", "{out}"], "--num-classes 0", id="export-num-classes-0"),
    pytest.param(["export", "--target", "onnx", "--precision", "int8", "--calib-samples", "0", "--out", "{out}"], "--calib-samples 0", id="export-calib-samples-0"),
    pytest.param(["export", "--target", "onnx", "--precision", "int8", "--calib", "{d}/empty-folder", "--out", "{out}"], "no images in", id="export-calib-empty"),
    pytest.param(["export", "--target", "onnx", "--precision", "int8", "--calib", "{d}/text-only", "--out", "{out}"], "no images in", id="export-calib-no-images"),
    pytest.param(["export", "--target", "onnx", "--precision", "int8", "--calib", "{d}/nowhere", "--out", "{out}"], "is not a directory", id="export-calib-missing"),
    pytest.param(["export", "--target", "onnx", "--precision", "fp16", "--out", "{out}"], "onnx does not export precision fp16", id="export-onnx-fp16"),
    pytest.param(["export", "--target", "bogus", "--out", "{out}"], "Invalid value for '--target'", id="export-unknown-target"),
    pytest.param(["export", "--target", "onnx"], "Missing option '--out'", id="export-no-out"),
    pytest.param(["export", "--target", "onnx", "--weights", "{d}/nan.safetensors", "--out", "{out}"], "holds NaN or infinite values", id="export-nan-weights"),
    # parity
    pytest.param(["parity", "{d}/random.onnx"], "random.onnx does not match its manifest (sha256", id="parity-random-onnx"),
    pytest.param(["parity", "{d}/empty.tflite"], "empty.tflite does not match its manifest", id="parity-empty-tflite"),
    pytest.param(["parity", "{d}/other.onnx"], "this manifest is not this artifact's", id="parity-other-models-manifest"),
    pytest.param(["parity", "{d}/typed.onnx"], "this manifest is not this artifact's", id="parity-other-targets-manifest"),
    pytest.param(["parity", "{d}/nan-manifest.onnx"], "is not valid JSON (NaN is not JSON)", id="parity-nan-in-manifest"),
    pytest.param(["parity", "{d}/list-manifest.onnx"], "has schema 'list'", id="parity-list-manifest"),
    pytest.param(["parity", "{d}/partial.onnx"], "lacks input, sha256", id="parity-partial-manifest"),
    pytest.param(["parity", "{d}/lonely.onnx"], "has no manifest", id="parity-no-manifest"),
    pytest.param(["parity", "{d}/missing.onnx"], "does not exist", id="parity-missing"),
    pytest.param(["parity", "{d}/random.onnx", "--n", "0"], "--n 0 is out of range", id="parity-n-0"),
    pytest.param(["parity", "{d}/random.onnx", "--threads", "0"], "--threads 0 is out of range", id="parity-threads-0"),
    pytest.param(["parity", "{d}/random.onnx", "--weights", "{d}/does-not-exist.safetensors"], "does not exist", id="parity-missing-weights"),
    pytest.param(["parity", "{d}/random.onnx", "--junit-xml", "{out}/parity.xml"], "does not match its manifest", id="parity-junit-not-written"),
    # eval
    pytest.param(["eval", "{d}/random.onnx", "--n", "0"], "--n 0 is out of range", id="eval-n-0"),
    pytest.param(["eval", "{d}/random.onnx", "--data", "fashion-mnist:subset"], "does not match its manifest", id="eval-random-onnx"),
    pytest.param(["eval", "{d}/empty.tflite", "--threads", "-1"], "--threads -1 is out of range", id="eval-threads-negative"),
    pytest.param(["eval", "{d}/other.onnx"], "this manifest is not this artifact's", id="eval-other-models-manifest"),
    # bench
    pytest.param(["bench", "{d}/random.onnx"], "does not match its manifest", id="bench-random-onnx"),
    pytest.param(["bench", "{d}/empty.tflite"], "does not match its manifest", id="bench-empty-tflite"),
    pytest.param(["bench", "{d}/random.onnx", "--threads", "0"], "--threads 0 is out of range", id="bench-threads-0"),
    pytest.param(["bench", "{d}/random.onnx", "--iters", "1"], "--iters 1 is out of range", id="bench-iters-1"),
    pytest.param(["bench", "{d}/random.onnx", "--warmup", "-1"], "--warmup -1 is out of range", id="bench-warmup-negative"),
    pytest.param(["bench", "{d}/random.onnx", "--device", "nowhere"], "unknown device", id="bench-unknown-device"),
    pytest.param(["bench", "{d}/random.onnx", "--json", "{out}/bench.json"], "does not match its manifest", id="bench-json-not-written"),
    # report
    pytest.param(["report", "{d}/bench-list.json", "--out", "{out}"], "is not a bench result (schema 'list')", id="report-json-list"),
    pytest.param(["report", "{d}/bench-no-results.json", "--out", "{out}"], "no results list", id="report-no-results"),
    pytest.param(["report", "{d}/bench-no-latency.json", "--out", "{out}"], "results[0] has no latency_ms", id="report-no-latency"),
    pytest.param(["report", "{d}/bench-no-device.json", "--out", "{out}"], "no device", id="report-no-device"),
    pytest.param(["report", "{d}/bench-text-latency.json", "--out", "{out}"], "latency_ms needs the numbers", id="report-text-latency"),
    pytest.param(["report", "{d}/bench-nan.json", "--out", "{out}"], "not valid JSON (NaN is not JSON)", id="report-nan"),
    pytest.param(["report", "{d}/binary.json", "--out", "{out}"], "is not valid JSON", id="report-binary"),
    pytest.param(["report", "{d}/missing.json", "--out", "{out}"], "does not exist", id="report-missing"),
    pytest.param(["report", "{d}/empty-folder", "--out", "{out}"], "is a directory", id="report-folder"),
    # quant-report
    pytest.param(["quant-report", "{d}/random.onnx"], "does not match its manifest", id="quant-report-random-onnx"),
    pytest.param(["quant-report", "{d}/other.onnx"], "this manifest is not this artifact's", id="quant-report-other-manifest"),
    pytest.param(["quant-report", "{d}/random.onnx", "--n", "0"], "--n 0 is out of range", id="quant-report-n-0"),
    pytest.param(["quant-report", "{d}/random.onnx", "--top", "0"], "--top 0 is out of range", id="quant-report-top-0"),
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

    from mvit_deploy import cli
    from mvit_deploy.models import card

    def crash():
        raise RuntimeError("a bug\nover two lines")

    monkeypatch.setattr(card, "all_cards", crash)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    result = CliRunner().invoke(cli.main, ["models", "--json"])
    assert result.exit_code == 3
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert "error: internal error: RuntimeError: a bug over two lines — please report it; full traceback in " in result.stderr
    log = Path(result.stderr.rsplit("full traceback in ", 1)[1].strip())
    assert log.parent == tmp_path and "Traceback" in log.read_text() and "crash" in log.read_text()


def test_non_finite_artifact_logits_fail_parity_with_valid_json():
    """An artifact that emits NaN fails its bounds by name; the JSON report still parses (null, not NaN)."""
    from mvit_deploy.parity import judge

    ref = np.random.default_rng(0).normal(size=(4, 10)).astype(np.float32)
    got = ref.copy()
    got[1, 3] = np.nan
    report = judge("a.onnx", "onnx", "fp32", ref, got)
    assert not report.passed and report.failures[0] == "logits: 1 of 40 values from the artifact are NaN or infinite"
    text = json.dumps(report.to_dict(), allow_nan=False)
    assert json.loads(text)["metrics"]["max_abs"] is None


def test_eval_json_of_one_image_has_no_infinite_interval():
    from mvit_deploy.evaluate import EvalReport, EvalRow, _drop_ci95

    ci = _drop_ci95(np.array([True]), np.array([False]))
    assert ci == (float("-inf"), float("inf"))
    row = EvalRow("a.onnx", "onnx", "fp32", {"top1": 1.0}, {"top1": 0.0}, 100.0, ci, 0.0, None, True)
    assert json.loads(json.dumps(EvalReport("one image", 1, [row]).to_dict(), allow_nan=False))["rows"][0]["drop_ci95"] == [None, None]


def test_the_corpus_covers_every_command():
    from mvit_deploy.cli import main

    covered = {p.values[0][0] for p in CASES}
    assert set(main.commands) <= covered, f"no bad-input case for {sorted(set(main.commands) - covered)}"


def test_a_sidecar_copied_with_its_renamed_artifact_still_reads(tmp_path):
    """The sha256 check must not refuse the pair a user renamed together."""
    from mvit_deploy.artifact import read_manifest, tree_sha256

    art = tmp_path / "renamed.onnx"
    art.write_bytes(b"not a real model, but the bytes the manifest was written for")
    (tmp_path / "renamed.json").write_text(json.dumps(_sidecar("mobilevit_xxs-onnx-fp32.onnx", sha256=tree_sha256(art))))
    assert read_manifest(art)["model"] == "mobilevit_xxs"
