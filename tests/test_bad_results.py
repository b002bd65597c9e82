"""The JSON files commands read back (bench results for report and --baseline, eval outputs, compute plans).

Each case runs the console script under a memory cap in an empty folder (hostile.refused_in_one_line).
"""

from __future__ import annotations

import json
import os
import signal
from contextlib import contextmanager

import numpy as np
import pytest
from hostile import bench_result, bench_run, refused_in_one_line

# (argv with {d} = the corpus (conftest.corpus) and {out} = a fresh output folder, words stderr must contain)
CASES = [
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
    pytest.param(["report", "{d}/binary.json", "--out", "{out}"], "is not UTF-8 text", id="report-binary"),
    pytest.param(["report", "{d}/missing.json", "--out", "{out}"], "does not exist", id="report-missing"),
    pytest.param(["report", "{d}/empty-folder", "--out", "{out}"], "is a directory", id="report-folder"),
    pytest.param(
        ["ane-check", "{d}/random.onnx", "--plan", "{d}/binary.json"],
        "binary.json is not UTF-8 text",
        id="ane-check-plan-binary",
    ),
    pytest.param(
        ["ane-check", "{d}/random.onnx", "--plan", "{d}/bench-list.json"],
        "is not a recorded compute plan",
        id="ane-check-plan-list",
    ),
]


@pytest.mark.parametrize("args, message", CASES)
def test_bad_result_is_refused_in_one_line(args, message, corpus, tmp_path):
    refused_in_one_line(args, message, corpus, tmp_path)


def test_eval_json_of_one_image_has_no_infinite_interval():
    from mvit_deploy.pipeline.evaluate import EvalReport, EvalRow, _drop_ci95

    ci = _drop_ci95(np.array([True]), np.array([False]))
    assert ci == (float("-inf"), float("inf"))
    row = EvalRow("a.onnx", "onnx", "fp32", {"top1": 1.0}, {"top1": 0.0}, 100.0, ci, 0.0, None, True)
    assert json.loads(json.dumps(EvalReport("one image", 1, [row]).to_dict(), allow_nan=False))["rows"][0][
        "drop_ci95"
    ] == [None, None]


# ---------------------------------------------------------------------------- files read back, validated (issue 33)

BIG = 6_000_000  # raw rounds in one baseline result: its bootstrap took 89 GiB before the bound


def _with(text: str, token: str, value: str) -> str:
    """``text`` with the JSON string ``"token"`` replaced by ``value`` verbatim (a number JSON holds, Python won't)."""
    assert f'"{token}"' in text
    return text.replace(f'"{token}"', value)


def _eval_doc(**row) -> dict:
    base = {
        "artifact": "a.onnx",
        "target": "onnx",
        "precision": "fp32",
        "reference": {"top1": 0.9, "top5": 1.0},
        "artifact_metrics": {"top1": 0.9, "top5": 1.0},
        "drop_points": 0.0,
        "drop_ci95": [0.0, 0.0],
        "top1_agreement": 1.0,
        "bound": None,
        "passed": True,
    }
    return {"data": "d", "n_images": 10, "rows": [{**base, **row}]}


@pytest.fixture(scope="module")
def results_corpus(corpus, tmp_path_factory):
    """The shared corpus's artifacts (linked) beside JSON files that are not what a reader may trust."""
    d = tmp_path_factory.mktemp("results-corpus")
    for name in ("matching.onnx", "matching.json", "random.onnx", "random.json"):
        (d / name).symlink_to(corpus / name)
    os.mkfifo(d / "fifo.json")  # nobody ever writes: a reader that opens it blocking waits forever
    (d / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (d / "good.json").write_text(json.dumps(bench_run()))
    (d / "latin1.json").write_bytes(
        json.dumps(bench_run(device={"name": "caf\xe9", "kind": "local"}), ensure_ascii=False).encode("latin-1")
    )
    (d / "latin1-eval.json").write_bytes(
        json.dumps({**_eval_doc(), "data": "caf\xe9"}, ensure_ascii=False).encode("latin-1")
    )

    def bench(name: str, value: str, **latency) -> None:
        """A bench result whose field holding "X" is written as ``value`` (e.g. 1e400, which json.dumps cannot)."""
        lat = {"min": 1.0, "p50": 1.1, "p90": 1.2, "p99": 1.3, "mean": 1.1, "std": 0.1, "samples": [1.0] * 10}
        text = json.dumps(bench_run(results=[bench_result(latency_ms={**lat, **latency})]))
        (d / name).write_text(_with(text, "X", value))

    bench("mean-1e400.json", "1e400", mean="X")
    bench("p50-huge.json", "1.7e308", p50="X")
    bench("p99-400-digits.json", "1" + "0" * 400, p99="X")  # an int: float() overflows instead of giving inf
    bench("samples-1e400.json", "[1.0, 1e400, 1.0, 1.0, 1.0, 1.0]", samples="X")
    bench("samples-huge.json", "[1.0, 1.7e308, 1.0, 1.0, 1.0, 1.0]", samples="X")
    # 6 M rounds written as text, never held as a Python list here: 24 MB on disk
    bench("samples-6m.json", "[" + "1.5," * (BIG - 1) + "1.5]", samples="X")
    for name, result in {
        "load-negative.json": bench_result(load_ms=-40.0),
        "bytes-negative.json": bench_result(bytes=-5),
        "rss-negative.json": bench_result(rss_delta_mb=-30.0),
        "psnr-1e999.json": bench_result(parity={"metrics": {"psnr_db": "X", "top1_agreement": 1.0}, "passed": True}),
        "psnr-huge.json": bench_result(parity={"metrics": {"psnr_db": 1e300, "top1_agreement": 1.0}, "passed": True}),
        "agreement-above-1.json": bench_result(
            parity={"metrics": {"psnr_db": 40.0, "top1_agreement": 1.5}, "passed": True}
        ),
    }.items():
        text = json.dumps(bench_run(results=[result]))
        (d / name).write_text(_with(text, "X", "1e999") if '"X"' in text else text)
    (d / "peak-rss-negative.json").write_text(json.dumps(bench_run(peak_rss_mb=-1.0)))
    (d / "eval-agreement-1e400.json").write_text(_with(json.dumps(_eval_doc(top1_agreement="X")), "X", "1e400"))
    (d / "eval-top1-above-1.json").write_text(json.dumps(_eval_doc(artifact_metrics={"top1": 2.0, "top5": 1.0})))
    (d / "eval-drop-past-100.json").write_text(json.dumps(_eval_doc(drop_points=-250.0)))
    return d


def _report(path: str, *more: str) -> list[str]:
    return ["report", path, "--out", "{out}", *more]


def _gate(baseline: str) -> list[str]:
    """`bench --baseline`: the artifact is never loaded when the baseline is refused (matching.onnx is random bytes)."""
    return ["bench", "{d}/matching.onnx", "--iters", "5", "--baseline", baseline]


# (argv with {d} = results_corpus, words stderr must contain)
MORE_CASES = [
    # not a regular file: a FIFO would block the read forever
    pytest.param(_report("{d}/fifo.json"), "fifo.json is a named pipe (FIFO), not a file", id="report-fifo"),
    pytest.param(_report("{d}/good.json", "--eval", "{d}/fifo.json"), "is a named pipe (FIFO)", id="report-eval-fifo"),
    pytest.param(_gate("{d}/fifo.json"), "fifo.json is a named pipe (FIFO)", id="bench-baseline-fifo"),
    pytest.param(
        ["ane-check", "{d}/random.onnx", "--plan", "{d}/fifo.json"], "is a named pipe (FIFO)", id="ane-check-plan-fifo"
    ),
    # nested 100,000 deep: RecursionError in the parser before
    pytest.param(_report("{d}/deep.json"), "nests deeper than 32 levels", id="report-deep"),
    pytest.param(_report("{d}/good.json", "--eval", "{d}/deep.json"), "which no eval file does", id="report-eval-deep"),
    pytest.param(
        _gate("{d}/deep.json"), "nests deeper than 32 levels, which no baseline file does", id="bench-baseline-deep"
    ),
    pytest.param(
        ["ane-check", "{d}/random.onnx", "--plan", "{d}/deep.json"],
        "nests deeper than 32 levels",
        id="ane-check-plan-deep",
    ),
    # not UTF-8 (a latin-1 device name, dataset name)
    pytest.param(_report("{d}/latin1.json"), "latin1.json is not UTF-8 text", id="report-latin1"),
    pytest.param(_report("{d}/good.json", "--eval", "{d}/latin1-eval.json"), "is not UTF-8", id="report-eval-latin1"),
    pytest.param(_gate("{d}/latin1.json"), "latin1.json is not UTF-8 text", id="bench-baseline-latin1"),
    # too many raw rounds: refused by the bound, not bootstrapped
    pytest.param(
        _gate("{d}/samples-6m.json"), "samples holds 6,000,000 rounds, more than the 1,000,000", id="bench-baseline-6m"
    ),
    pytest.param(_report("{d}/samples-6m.json"), "samples holds 6,000,000 rounds", id="report-6m"),
    # numbers that are not numbers (1e400 parses to inf) or not measurements
    pytest.param(_report("{d}/mean-1e400.json"), "results[0].latency_ms.mean is inf", id="report-mean-1e400"),
    pytest.param(
        _report("{d}/p50-huge.json"), "results[0].latency_ms.p50 is 1.7e+308, more than", id="report-p50-1.7e308"
    ),
    pytest.param(_report("{d}/p99-400-digits.json"), "latency_ms.p99 is inf", id="report-p99-400-digit-int"),
    pytest.param(_report("{d}/samples-huge.json"), "latency_ms.samples[1] is 1.7e+308", id="report-samples-1.7e308"),
    pytest.param(_gate("{d}/samples-1e400.json"), "latency_ms.samples[1] is inf", id="bench-baseline-samples-1e400"),
    pytest.param(_report("{d}/load-negative.json"), "results[0].load_ms is negative", id="report-load-negative"),
    pytest.param(_report("{d}/bytes-negative.json"), "results[0].bytes is negative", id="report-bytes-negative"),
    pytest.param(_report("{d}/rss-negative.json"), "results[0].rss_delta_mb is negative", id="report-rss-negative"),
    pytest.param(_report("{d}/peak-rss-negative.json"), "peak_rss_mb is negative", id="report-peak-rss-negative"),
    pytest.param(_report("{d}/psnr-1e999.json"), "parity.metrics.psnr_db is inf", id="report-psnr-1e999"),
    pytest.param(_report("{d}/psnr-huge.json"), "parity.metrics.psnr_db is 1e+300", id="report-psnr-1e300"),
    pytest.param(
        _report("{d}/agreement-above-1.json"),
        "parity.metrics.top1_agreement is 1.5, more than 1",
        id="report-agreement-above-1",
    ),
    pytest.param(
        _report("{d}/good.json", "--eval", "{d}/eval-agreement-1e400.json"),
        "rows[0].top1_agreement is inf",
        id="report-eval-agreement-1e400",
    ),
    pytest.param(
        _report("{d}/good.json", "--eval", "{d}/eval-top1-above-1.json"),
        "rows[0].artifact_metrics.top1 is 2, more than 1",
        id="report-eval-top1-above-1",
    ),
    pytest.param(
        _report("{d}/good.json", "--eval", "{d}/eval-drop-past-100.json"),
        "rows[0].drop_points is -250, below -100",
        id="report-eval-drop-past-100",
    ),
]


@pytest.mark.parametrize("args, message", MORE_CASES)
def test_bad_file_read_back_is_refused_in_one_line(args, message, results_corpus, tmp_path):
    refused_in_one_line(args, message, results_corpus, tmp_path)


def test_a_report_at_the_edges_of_every_bound_draws(tmp_path):
    """The bounds keep every chart finite: 0, the smallest float and an hour on one log axis, PSNR at ±13,000 dB."""
    from mvit_deploy.faces.report import write_report

    def parity(psnr):
        return {"metrics": {"psnr_db": psnr, "top1_agreement": 1.0}, "passed": True}

    edges = {"min": 5e-324, "p50": 1e-300, "p90": 1.0, "p99": 3.6e6, "mean": 1.0, "std": 0.0}
    run = bench_run(
        results=[
            bench_result(
                artifact="a.onnx", latency_ms={**edges, "samples": [0.0, 5e-324, 1.0, 3.6e6]}, parity=parity(13e3)
            ),
            bench_result(
                artifact="b.onnx", latency_ms={**edges, "p50": 3.6e6}, parity=parity(-13e3), bytes=0, load_ms=0
            ),
        ]
    )
    (tmp_path / "edges.json").write_text(json.dumps(run))
    md, page = write_report([tmp_path / "edges.json"], tmp_path / "out", [])
    assert "a.onnx" in md.read_text() and page.read_text().count("<svg") == 2


# ---------------------------------------------------------------------------- the latency gate's bootstrap


def test_the_bootstrap_draws_in_blocks_with_the_same_result(monkeypatch):
    from mvit_deploy.bench import compare

    rng = np.random.default_rng(0)
    cur, base = rng.normal(10, 1, 50), rng.normal(9, 1, 40)
    whole = compare.median_ratio_ci(cur, base)
    monkeypatch.setattr(compare, "BOOTSTRAP_BLOCK", 7 * 50)  # 7 rounds a block for cur, 8 for base
    assert compare.median_ratio_ci(cur, base) == whole


def test_the_bootstrap_memory_does_not_grow_with_the_rounds():
    """12 rounds of 1 M samples: one [rounds, n] draw peaked at 184 MB (2000 rounds of 6 M: 89 GiB); blocks of
    BOOTSTRAP_BLOCK (4 M) values peak at 61 MB, whatever the rounds."""
    import tracemalloc

    from mvit_deploy.bench.compare import BOOTSTRAP_BLOCK, median_ratio_ci

    samples = np.random.default_rng(0).normal(10, 1, 1_000_000)
    tracemalloc.start()
    try:
        median_ratio_ci(samples, samples, rounds=12)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * 8 * BOOTSTRAP_BLOCK, f"{peak / 2**20:.0f} MB"


# ---------------------------------------------------------------------------- eval --resume shards


@contextmanager
def deadline(seconds: int):
    """Fail instead of hanging (a FIFO opened blocking waits for a writer forever)."""

    def expire(*_):
        raise TimeoutError(f"still blocked after {seconds} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


SHARD_KEYS = {"ref:mobilevit_xxs:abc:10", "art:0"}  # 10 classes: top-5 columns


def _store(tmp_path, resume: bool):
    from mvit_deploy.pipeline.eval_shards import ShardStore

    return ShardStore(tmp_path / "out", {"artifacts": [["a.onnx", "ab" * 32]], "n": 8, "shard": 4}, resume)


def _shard(width: int, n: int = 4, dtype=np.int32) -> dict:
    return {k: np.zeros((n, width), dtype) for k in SHARD_KEYS}


def test_a_resume_shard_of_this_run_is_reused_and_a_short_one_rerun(tmp_path):
    first = _store(tmp_path, resume=False)
    first.save(0, 4, _shard(5))
    first.save(4, 8, _shard(5, n=3))  # the wrong length: not this layout's, run again
    store = _store(tmp_path, resume=True)
    assert store.load(0, 4, SHARD_KEYS)["art:0"].shape == (4, 5)
    assert store.load(4, 8, SHARD_KEYS) is None and not store.path(4, 8).exists()


@pytest.mark.parametrize(
    "arrays, message",
    [
        (_shard(3), "holds art:0 as int32 of shape [4, 3], and this run's shards hold int32 of shape [4, 5]"),
        (_shard(5, dtype=np.float64), "holds art:0 as float64 of shape [4, 5]"),
    ],
    ids=["width-3-of-5", "float-classes"],
)
def test_a_resume_shard_of_the_wrong_width_is_refused_naming_it(tmp_path, arrays, message):
    from mvit_deploy.errors import UsageError

    _store(tmp_path, resume=False).save(0, 4, arrays)
    store = _store(tmp_path, resume=True)
    with pytest.raises(UsageError) as e:
        store.load(0, 4, SHARD_KEYS)
    line = e.value.one_line()
    assert message in line and str(store.path(0, 4)) in line and "drop --resume" in line and "\n" not in line
    assert store.path(0, 4).exists()  # refused, not silently deleted


def test_a_resume_shard_claiming_a_huge_shape_allocates_nothing(tmp_path):
    """Its header says [4, 10**12]: refused from the header, before numpy would allocate 16 TB."""
    import io
    import tracemalloc
    import zipfile

    from numpy.lib import format as npy

    from mvit_deploy.errors import UsageError

    store = _store(tmp_path, resume=False)
    with zipfile.ZipFile(store.path(0, 4), "w") as z:
        for k in SHARD_KEYS:
            header = io.BytesIO()
            npy.write_array_header_1_0(header, {"descr": "<i4", "fortran_order": False, "shape": (4, 10**12)})
            z.writestr(f"{k}.npy", header.getvalue() + b"\0" * 64)
    tracemalloc.start()
    try:
        with pytest.raises(UsageError, match=r"shape \[4, 1000000000000\]"):
            _store(tmp_path, resume=True).load(0, 4, SHARD_KEYS)
        assert tracemalloc.get_traced_memory()[1] < 10 << 20
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("where", ["shards/000000000-000000004.npz", "run.json"])
def test_a_fifo_in_the_resumed_folder_is_refused_not_waited_on(tmp_path, where):
    from mvit_deploy.errors import UsageError

    _store(tmp_path, resume=False)
    target = tmp_path / "out" / where
    target.unlink(missing_ok=True)
    os.mkfifo(target)
    with deadline(20), pytest.raises(UsageError, match=r"is a named pipe \(FIFO\), not a file"):
        _store(tmp_path, resume=True).load(0, 4, SHARD_KEYS)


# ---------------------------------------------------------------------------- ane-check --plan of another model


@pytest.fixture(scope="module")
def plan_corpus(tmp_path_factory):
    """A one-conv Core ML program and plans recorded for it and for another model."""
    ct = pytest.importorskip(
        "coremltools", reason="coremltools (the lock's [coreml] extra) reads and converts .mlpackage files"
    )
    from coremltools.converters.mil import Builder as mb

    from mvit_deploy.targets.coreml_exec.program import load_program

    d = tmp_path_factory.mktemp("plan-corpus")
    w = np.random.default_rng(0).standard_normal((64, 64, 1, 1)).astype(np.float32)
    prog = mb.program(input_specs=[mb.TensorSpec(shape=(1, 64, 1, 64))], opset_version=ct.target.iOS17)(
        lambda x: mb.relu(x=mb.conv(x=x, weight=w))
    )
    ct.convert(prog, convert_to="mlprogram", minimum_deployment_target=ct.target.iOS17).save(str(d / "tiny.mlpackage"))
    ops = [o.outputs[0][0] for o in load_program(d / "tiny.mlpackage").operations if o.outputs]
    (d / "own-plan.json").write_text(json.dumps({name: {"op": "x", "device": "ane", "cost": 0.5} for name in ops}))
    (d / "other-plan.json").write_text(json.dumps({"var_999": {"op": "conv", "device": "ane", "cost": 0.5}}))
    (d / "odd-device-plan.json").write_text(json.dumps({ops[0]: {"op": "conv", "device": "tpu", "cost": 0.5}}))
    return d


def test_a_plan_of_this_program_compares(plan_corpus):
    from mvit_deploy.targets.coreml_exec import ane

    _, comparison = ane.check_with_plan(plan_corpus / "tiny.mlpackage", plan_corpus / "own-plan.json")
    assert comparison["ops"] >= 1 and comparison["agreement"] is not None


@pytest.mark.parametrize(
    "plan, message",
    [
        ("other-plan.json", "other-plan.json names no op of"),
        ("odd-device-plan.json", "runs on 'tpu'"),
    ],
    ids=["plan-of-another-model", "plan-unknown-device"],
)
def test_a_plan_that_is_not_this_programs_is_refused(plan_corpus, tmp_path, plan, message):
    refused_in_one_line(["ane-check", "{d}/tiny.mlpackage", "--plan", f"{{d}}/{plan}"], message, plan_corpus, tmp_path)
