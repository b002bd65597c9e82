"""eval streams: memory flat in the number of images, the same answer at any batch, McNemar against scipy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import stats

from mvit_deploy.inputs.datasets.fashion_mnist import load_fashion_mnist
from mvit_deploy.pipeline.evaluate import mcnemar_exact
from mvit_deploy.pipeline.export import export
from mvit_deploy.targets import ExportOptions

MVIT = str(Path(sys.executable).with_name("mvit-deploy"))


def peak_rss_mb(*args: str) -> tuple[float, str]:
    """Run the CLI in a child; its peak resident memory (MB) and stdout."""
    code = (
        "import resource, subprocess, sys; done = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
        "sys.stdout.write(done.stdout); "
        "sys.stderr.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)); sys.exit(done.returncode)"
    )
    done = subprocess.run([sys.executable, "-c", code, MVIT, *args], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    return int(done.stderr.strip().splitlines()[-1]) / 1024, done.stdout


@pytest.fixture(scope="module")
def at_256(tmp_path_factory):
    """The shipped Fashion-MNIST XXS exported at 256 px, and 2,000 labeled PNGs in class folders (the shipped 1,000,
    twice)."""
    root = tmp_path_factory.mktemp("scale")
    onnx = export(
        ExportOptions(model="mobilevit_xxs", pretrained="fashion", target="onnx", input_size=256, out_dir=root),
        run_parity=False,
    ).artifact
    images, labels = load_fashion_mnist("subset")
    data = root / "data"
    for copy in range(2):
        for i, (im, y) in enumerate(zip(images, labels, strict=False)):
            folder = data / str(int(y))
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(im, "L").save(folder / f"{copy}-{i:04d}.png")
    return onnx, data, labels


@pytest.mark.slow
def test_memory_does_not_grow_with_the_number_of_images(at_256):
    onnx, data, labels = at_256
    small, _ = peak_rss_mb("eval", str(onnx), "--data", str(data), "--n", "200", "--json")
    large, out = peak_rss_mb("eval", str(onnx), "--data", str(data), "--json")
    report = json.loads(out)
    assert report["n_images"] == 2000 and len(report["samples"]["labels"]) == 2000
    held_at_once = 2000 * 3 * 256 * 256 * 4 / 2**20  # 1,536 MB of float32 inputs
    assert large - small < 150, f"peak RSS {small:.0f} MB at 200 images, {large:.0f} MB at 2,000"
    assert large < held_at_once, f"peak RSS {large:.0f} MB, the inputs alone would take {held_at_once:.0f} MB"
    row = report["rows"][0]
    assert (
        row["top1_agreement"] >= 0.99 and abs(row["drop_points"]) <= 0.2
    )  # fp32 agrees with its reference (a 64 px model: low accuracy at 256)


def test_same_predictions_at_any_batch_and_one_reference_pass(at_256, tmp_path):
    onnx, data, _ = at_256
    runs = [
        json.loads(
            subprocess.run(
                [MVIT, "eval", str(onnx), str(onnx), "--data", str(data), "--n", "40", "--batch", b, "--json"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        for b in ("7", "32")
    ]
    a, b = runs
    assert a["batch"] == 7 and b["batch"] == 32
    assert (
        a["rows"][0]["predictions"]["top5"]
        == b["rows"][0]["predictions"]["top5"]
        == b["rows"][1]["predictions"]["top5"]
    )
    assert a["samples"] == b["samples"]
    ref = np.array(next(iter(b["samples"]["references"].values())))
    labels = np.array(b["samples"]["labels"])
    assert b["rows"][0]["reference"]["top1"] == pytest.approx(np.mean(ref[:, 0] == labels))


@pytest.mark.parametrize("b, c", [(0, 0), (0, 5), (2, 0), (3, 9), (40, 60), (210, 170)])
def test_mcnemar_exact_matches_scipy_binomtest(b, c):
    ref = np.array([True] * b + [False] * c + [True] * 7)
    art = np.array([False] * b + [True] * c + [True] * 7)
    expected = 1.0 if b + c == 0 else stats.binomtest(min(b, c), b + c, 0.5).pvalue
    assert mcnemar_exact(ref, art) == pytest.approx(expected, rel=1e-9)


def test_the_reference_runs_once_for_artifacts_of_one_checkpoint(at_256, monkeypatch):
    import mvit_deploy.pipeline.parity as parity
    from mvit_deploy.pipeline.evaluate import evaluate

    onnx, data, _ = at_256
    calls = []
    real = parity.reference_logits
    monkeypatch.setattr(parity, "reference_logits", lambda model, x: calls.append(len(x)) or real(model, x))
    evaluate([onnx, onnx, onnx], data, n=40, batch=8)
    assert sum(calls) == 40 and len(calls) == 5  # 40 images once, in 5 batches of 8 — not three times


def _synthetic_report(n: int, artifacts: int, seed: int = 0):
    from mvit_deploy.pipeline.evaluate import EvalReport, EvalRow

    rng = np.random.default_rng(seed)
    top5 = lambda: rng.integers(0, 1000, size=(n, 5), dtype=np.int32)  # noqa: E731  (ImageNet indices: not Python's cached small ints)
    rows = [
        EvalRow(
            f"a{i}.onnx",
            "onnx",
            "int8",
            {"top1": 0.7, "top5": 0.9},
            {"top1": 0.69, "top5": 0.9},
            1.0,
            (float("-inf"), 2.0),
            0.95,
            None,
            True,
            3,
            0.5,
            "within noise",
            {"reference": "r", "top5": top5()},
        )
        for i in range(artifacts)
    ]
    return EvalReport("synthetic", n, rows, rng.integers(0, 1000, size=n), {"r": top5()}, 32, {"name": "local"})


def test_json_streams_the_per_sample_arrays_and_equals_the_stdlib_text():
    """eval --json writes what json.dumps of the list form writes, byte for byte, without building those lists."""
    import io
    import tracemalloc

    small = _synthetic_report(1000, 3, seed=1)
    streamed = io.StringIO()
    small.write_json(streamed, chunk=64)  # several chunks per array, and a last partial one
    assert streamed.getvalue() == json.dumps(small.to_dict(), allow_nan=False)
    parsed = json.loads(streamed.getvalue())
    assert parsed["rows"][1]["predictions"]["top5"] == small.rows[1].predictions["top5"].tolist()
    assert parsed["rows"][0]["drop_ci95"] == [None, 2.0]  # an infinite bound is null, as before

    class Sink:  # counts characters, keeps none
        n = 0

        def write(self, s: str) -> None:
            self.n += len(s)

    big = _synthetic_report(20_000, 10)  # 11 arrays of 20,000 x 5
    tracemalloc.start()
    sink = Sink()
    big.write_json(sink)
    streamed_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.reset_peak()
    listed = len(json.dumps(big.to_dict(), allow_nan=False))
    listed_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert sink.n == listed
    # measured: 2.5 MB streamed against 75 MB through lists (20,000 x 11 x 5 ints)
    assert streamed_peak < listed_peak / 10, (streamed_peak / 1e6, listed_peak / 1e6)
