"""`mvit-deploy report`: several devices and runs side by side, distributions, the baseline, fidelity and accuracy.

The inputs are bench and eval JSONs built here from seeded numpy rounds (no export needed); every
number the report prints is checked against numpy on those rounds. Chromium (headless) renders the
page: a screenshot that is not blank, and a DOM check that no SVG label and no table cell overflows
its box — a check shown to fail on a page built to overflow.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers import run_cli
from PIL import Image

from mvit_deploy.bench.local import SCHEMA

LONG = "mobilevit_xxs_finetuned_on_the_warehouse_camera_dataset_v3_with_a_name_nobody_shortens"
FP32, INT8, TFLITE = f"{LONG}-onnx-fp32.onnx", f"{LONG}-onnx-int8.onnx", "mobilevit_xxs-tflite-int8.tflite"
COREML = "mobilevit_xxs-coreml-int8.mlpackage"  # evaluated, never benchmarked
HOST = "build-host-with-a-rather-long-hostname-in-the-lab"
PHONE = "Samsung Galaxy S24 (Family)"
# artifact: (target, precision, runtime, median ms on the host, PSNR dB)
SPECS = {
    FP32: ("onnx", "fp32", "onnxruntime", 9.0, 135.2),
    INT8: ("onnx", "int8", "onnxruntime", 6.5, 44.1),
    TFLITE: ("tflite", "int8", "litert", 5.0, 36.0),
}
# Tuesday against Monday: one regression, one unchanged, one faster
SHIFT = {FP32: 1.25, INT8: 1.0, TFLITE: 0.8}
VERDICT = {FP32: "regression", INT8: "within noise", TFLITE: "faster"}
BAD_BG, GOOD_BG = (
    (253, 236, 234),
    (232, 245, 233),
)  # mvit_deploy/faces/report/__init__.py's td.bad / td.good backgrounds


def rounds(rng, ms: float, n: int = 60) -> np.ndarray:
    """Latency-like rounds: a floor, right-skewed jitter and a rare slow round."""
    x = ms * (0.95 + rng.gamma(2.0, 0.03, n))
    spikes = rng.random(n) < 0.05
    x[spikes] *= rng.uniform(1.3, 2.0, spikes.sum())
    return np.round(x, 4)


def latency(samples: np.ndarray | None, **recorded) -> dict:
    if samples is None:
        return recorded
    p = np.percentile(samples, [50, 90, 99])
    return {
        "min": float(samples.min()),
        "p50": float(p[0]),
        "p90": float(p[1]),
        "p99": float(p[2]),
        "mean": float(samples.mean()),
        "std": float(samples.std(ddof=1)),
        "samples": samples.tolist(),
    }


def result(name: str, lat: dict, **extra) -> dict:
    target, precision, runtime, _, psnr = SPECS[name]
    parity = {"passed": psnr > 40, "metrics": {"psnr_db": psnr, "top1_agreement": 1.0 if psnr > 40 else 0.97}}
    if psnr <= 40:
        parity["failures"] = [f"psnr_db {psnr} < 40"]
    return {
        "artifact": f"/data/exports/{name}",
        "model": "mobilevit_xxs",
        "target": target,
        "precision": precision,
        "runtime": runtime,
        "input_size": 256,
        "bytes": 5_400_000 if precision == "fp32" else 1_600_000,
        "load_ms": 42.0,
        "latency_ms": lat,
        "throughput_ips": 1e3 / lat["mean"],
        "rss_delta_mb": 31.0,
        "parity": parity,
        **extra,
    }


def run(device: dict, results: list[dict], **extra) -> dict:
    return {
        "schema": SCHEMA,
        "device": device,
        "settings": {"threads": 2, "warmup": 5, "iters": 60, "interleaved": True},
        "results": results,
        "peak_rss_mb": 310.0,
        "skipped": [
            {"artifact": "/data/exports/mobilevit_xxs-coreml-fp16.mlpackage", "reason": "Core ML runs on macOS only"}
        ],
        **extra,
    }


def bootstrap_ci(cur, base, rng) -> list[float]:
    c = np.median(cur[rng.integers(0, len(cur), (1000, len(cur)))], axis=1)
    b = np.median(base[rng.integers(0, len(base), (1000, len(base)))], axis=1)
    return np.percentile(c / b - 1, [2.5, 97.5]).tolist()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict:
    """Three runs (two on the host, Tuesday against Monday; one on an AI Hub phone) and one eval result."""
    d = tmp_path_factory.mktemp("report-inputs")
    rng = np.random.default_rng(2026)
    host = {
        "name": HOST,
        "kind": "local",
        "cpu": "AMD EPYC 7B13 64-Core Processor",
        "cores": 2,
        "os": "Linux 6.1",
        "machine": "x86_64",
        "python": "3.11.7",
        "runtimes": {"numpy": "2.4.6", "onnxruntime": "1.31.1", "ai-edge-litert": "2.3.0"},
    }
    monday = {n: rounds(rng, SPECS[n][3]) for n in SPECS}
    tuesday = {n: rounds(rng, SPECS[n][3] * SHIFT[n]) for n in SPECS}
    comparisons = {}
    for n in SPECS:
        change = float(np.median(tuesday[n]) / np.median(monday[n]) - 1)
        comparisons[n] = {
            "baseline_p50_ms": float(np.median(monday[n])),
            "p50_ms": float(np.median(tuesday[n])),
            "change": change,
            "ci95": bootstrap_ci(tuesday[n], monday[n], rng),
            "p_value": 1e-9 if n != INT8 else 0.41,
            "verdict": VERDICT[n],
        }
    versions = {"mvit-deploy": "0.1.0", "torch": "2.13.0+cpu", "onnx": "1.17.0", "onnxruntime": "1.31.1"}
    phone_rounds = rounds(rng, 1.2, 100)
    # as bench/aihub.py writes it: the chipset as cpu, no core count or Python, the hub's memory estimate, a link to
    # each job
    phone = {
        "name": PHONE,
        "kind": "aihub",
        "cpu": "qualcomm-snapdragon-8gen3",
        "cores": None,
        "os": "Android 14",
        "machine": "aarch64-android",
        "python": None,
        "runtimes": {"qai-hub": "0.56.0"},
    }
    hub = {"rss_delta_mb": None, "first_load_ms": 310.0}
    runs = {
        "host-monday.json": run(host, [result(n, latency(monday[n])) for n in SPECS]),
        "host-tuesday.json": run(
            host,
            [result(n, latency(tuesday[n]), comparison=comparisons[n], versions=versions) for n in SPECS],
            baseline={
                "file": "host-monday.json",
                "max_regression": 0.10,
                "method": "median shift > bound, Mann-Whitney U p < 0.01",
                "same_device": True,
                "device": HOST,
            },
        ),
        "phone.json": run(
            phone,
            [
                result(
                    INT8,
                    latency(phone_rounds),
                    peak_memory_mb=41.5,
                    peak_memory_range_mb=[38.2, 45.0],
                    compute_units={"NPU": 412, "GPU": 0, "CPU": 3},
                    aihub_job={"id": "jp4k", "url": "https://app.aihub.qualcomm.com/jobs/jp4k/"},
                    **hub,
                ),
                result(
                    TFLITE,
                    latency(None, min=0.61, p50=0.74, p90=0.93, p99=1.4, mean=0.78, std=0.11),
                    peak_memory_mb=38.0,
                    compute_units={"CPU": 17, "NPU": 398},
                    aihub_job={"id": "jq9z", "url": "javascript:alert(1)"},
                    **{**hub, "load_ms": None},
                ),
            ],
        ),
    }
    for name, data in runs.items():
        (d / name).write_text(json.dumps(data, indent=1))
    rows = [  # EvalReport.to_dict's rows; a one-image interval is [null, null]
        {
            "artifact": f"out/{n}",
            "target": t,
            "precision": p,
            "reference": {"top1": 0.9252, "top5": 0.9981},
            "artifact_metrics": {"top1": a1, "top5": 0.998},
            "drop_points": (0.9252 - a1) * 100,
            "drop_ci95": ci,
            "top1_agreement": agree,
            "bound": bound,
            "passed": passed,
        }
        for n, t, p, a1, ci, agree, bound, passed in [
            (FP32, "onnx", "fp32", 0.9252, [0.0, 0.0], 1.0, None, True),
            (
                INT8,
                "onnx",
                "int8",
                0.9249,
                [-0.1, 0.16],
                0.995,
                {"metric": "top1_drop_points", "op": "<=", "value": 1.0, "reason": "int8"},
                True,
            ),
            (
                COREML,
                "coreml",
                "int8",
                0.9011,
                [None, None],
                0.97,
                {"metric": "top1_drop_points", "op": "<=", "value": 1.0, "reason": "int8"},
                False,
            ),
        ]
    ]
    (d / "eval.json").write_text(
        json.dumps({"data": "Fashion-MNIST test set, 10000 images", "n_images": 10000, "passed": False, "rows": rows})
    )
    return {
        "dir": d,
        "runs": runs,
        "monday": monday,
        "tuesday": tuesday,
        "phone": phone_rounds,
        "comparisons": comparisons,
        "eval_rows": rows,
    }


@pytest.fixture(scope="module")
def report(inputs, tmp_path_factory) -> dict:
    d, out = inputs["dir"], tmp_path_factory.mktemp("report") / "out"
    done = run_cli("report", *(str(d / n) for n in inputs["runs"]), "--eval", str(d / "eval.json"), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"wrote {out / 'report.md'}", f"wrote {out / 'report.html'}"]
    return {"md": (out / "report.md").read_text(), "page": out / "report.html", "out": out}


def md_tables(md: str) -> dict[str, list[dict[str, str]]]:
    """``## Title`` -> the rows of the table under it, as {column: cell}."""
    tables = {}
    for block in md.split("\n## ")[1:]:
        title, *lines = block.splitlines()
        rows = [[c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]] for line in lines if line.startswith("|")]
        if rows:
            tables[title] = [dict(zip(rows[0], r, strict=False)) for r in rows[2:]]
    return tables


def by(rows: list[dict], **match) -> dict:
    (row,) = [r for r in rows if all(r[k] == v for k, v in match.items())]
    return row


def column(runs: dict, file: str) -> str:
    dev = runs[file]["device"]
    return f"{dev['name']} ({dev['kind']}) · {file}"


# ---------------------------------------------------------------------------- report.md against numpy


def test_matrix_puts_devices_and_runs_side_by_side(inputs, report):
    tables = md_tables(report["md"])
    matrix, runs = tables["Latency"], inputs["runs"]
    assert [r["artifact"] for r in matrix] == [f"`{n}`" for n in (FP32, INT8, TFLITE, COREML)]  # one row per artifact
    for n in SPECS:
        row = by(matrix, artifact=f"`{n}`")
        mon, tue = inputs["monday"][n], inputs["tuesday"][n]
        assert row[column(runs, "host-monday.json")] == f"{np.median(mon):.2f} ({np.percentile(mon, 90):.2f})"
        c = inputs["comparisons"][n]
        lo, hi = c["ci95"]
        tuesday = (
            f"{np.median(tue):.2f} ({np.percentile(tue, 90):.2f}) {VERDICT[n]} "
            f"{np.median(tue) / np.median(mon) - 1:+.1%} [{lo:+.1%}, {hi:+.1%}]"
        )
        assert row[column(runs, "host-tuesday.json")] == (f"**{tuesday}**" if VERDICT[n] == "regression" else tuesday)
        assert row["PSNR dB"] == f"{SPECS[n][4]:.1f}"
    assert by(matrix, artifact=f"`{FP32}`")[column(runs, "phone.json")] == "-"  # not measured there
    phone = inputs["phone"]
    assert (
        by(matrix, artifact=f"`{INT8}`")[column(runs, "phone.json")]
        == f"{np.median(phone):.2f} ({np.percentile(phone, 90):.2f})"
    )
    assert (
        by(matrix, artifact=f"`{TFLITE}`")[column(runs, "phone.json")] == "0.74 (0.93)"
    )  # no rounds kept: the recorded percentiles
    assert (
        by(matrix, artifact=f"`{TFLITE}`")["parity"] == "**FAIL**"
        and by(matrix, artifact=f"`{INT8}`")["parity"] == "pass"
    )
    # fp32/int8 accuracy from eval beside the latency, matched by file name (eval ran on out/..., bench on
    # /data/exports/...)
    assert by(matrix, artifact=f"`{INT8}`")["eval top-1"] == "92.49% (drop +0.03 pts, 95% CI -0.10 .. +0.16)"
    assert (
        by(matrix, artifact=f"`{COREML}`")["eval top-1"] == "**90.11% (drop +2.41 pts)**"
    )  # failed its bound; no interval from JSON nulls


def test_baseline_regression_is_named_with_its_change_and_interval(inputs, report):
    md, tables = report["md"], md_tables(report["md"])
    c = inputs["comparisons"][FP32]
    change = np.median(inputs["tuesday"][FP32]) / np.median(inputs["monday"][FP32]) - 1
    assert 0.15 < change < 0.35  # the seeded shift is there to be found
    bullet = next(line for line in md.splitlines() if line.startswith("- **regression:"))
    assert (
        f"{FP32} on {HOST} (local) · host-tuesday.json against host-monday.json" in bullet
        and f"{change:+.1%}" in bullet
    )
    assert f"p50 {np.median(inputs['monday'][FP32]):.2f} -> {np.median(inputs['tuesday'][FP32]):.2f} ms" in bullet
    rows = tables["Against the baseline"]
    assert {r["artifact"]: r["verdict"] for r in rows} == {
        f"`{n}`": (f"**{v}**" if v == "regression" else v) for n, v in VERDICT.items()
    }
    row = by(rows, artifact=f"`{FP32}`")
    assert (
        row["change of the median"] == f"**{change:+.1%}**"
        and row["95% CI"] == f"{c['ci95'][0]:+.1%} .. {c['ci95'][1]:+.1%}"
    )
    assert row["baseline p50 ms"] == f"{np.median(inputs['monday'][FP32]):.2f}" and row["p"] == "1e-09"


def test_measurements_metadata_and_accuracy(inputs, report):
    tables = md_tables(report["md"])
    m = tables["Measurements"]
    mon = inputs["monday"][INT8]
    row = by(m, run="host-monday.json", artifact=f"`{INT8}`")
    q1, q3 = np.percentile(mon, [25, 75])
    assert (
        row["IQR"] == f"{q1:.2f} .. {q3:.2f}"
        and row["rounds kept"] == str(len(mon))
        and row["p99"] == f"{np.percentile(mon, 99):.2f}"
    )
    assert row["mean ± std"] == f"{mon.mean():.2f} ± {mon.std(ddof=1):.2f}" and row["device"] == f"{HOST} (local)"
    phone = by(m, run="phone.json", artifact=f"`{INT8}`")
    assert phone["compute units"] == "NPU 412 · GPU 0 · CPU 3" and phone["device"] == f"{PHONE} (aihub)"
    assert (
        by(m, run="phone.json", artifact=f"`{TFLITE}`")["compute units"] == "NPU 398 · CPU 17"
    )  # NPU, GPU, CPU in that order
    assert by(m, run="phone.json", artifact=f"`{TFLITE}`")["IQR"] == "-"
    assert (
        phone["peak MB"] == "42 (38..45)"
        and phone["RSS+ MB"] == "-"
        and phone["AI Hub job"] == "[jp4k](https://app.aihub.qualcomm.com/jobs/jp4k/)"
    )
    tfl = by(m, run="phone.json", artifact=f"`{TFLITE}`")
    assert (
        tfl["load ms"] == "-" and tfl["AI Hub job"] == "jq9z"
    )  # no load time reported; a link that is not https is no link
    runs = {r["run"]: r for r in tables["Runs"]}
    assert (
        runs["`phone.json`"]["kind"] == "aihub"
        and runs["`phone.json`"]["CPU / chip"] == "qualcomm-snapdragon-8gen3"
        and runs["`phone.json`"]["cores"] == "-"
    )
    assert runs["`host-monday.json`"]["runtimes"] == "numpy 2.4.6, onnxruntime 1.31.1, ai-edge-litert 2.3.0"
    art = {r["artifact"]: r for r in tables["Artifacts"]}
    assert (
        art[f"`{FP32}`"]["converter versions"] == "mvit-deploy 0.1.0, torch 2.13.0+cpu, onnx 1.17.0, onnxruntime 1.31.1"
    )  # Tuesday's results carry them
    assert (
        art[f"`{INT8}`"]["MB"] == "1.6"
        and art[f"`{INT8}`"]["precision"] == "int8"
        and art[f"`{INT8}`"]["target"] == "onnx"
    )
    acc = {r["artifact"]: r for r in tables["Accuracy"]}
    assert (
        acc[f"`{INT8}`"]["drop, points (95% CI)"] == "+0.03 (-0.10 .. +0.16)"
        and acc[f"`{INT8}`"]["reference top-1"] == "92.52%"
    )
    assert acc[f"`{COREML}`"]["result"] == "**FAIL (bound 1)**" and acc[f"`{FP32}`"]["result"] == "pass"
    assert (
        f"- `mobilevit_xxs-coreml-fp16.mlpackage` on {PHONE} (aihub) · phone.json: Core ML runs on macOS only"
        in report["md"]
    )


def test_html_is_self_contained_with_a_box_per_artifact_and_run(inputs, report):
    page = report["page"].read_text()
    assert page.count("<svg") == 2 and "<script" not in page and " src=" not in page and "<link" not in page
    assert "http" not in re.sub(
        r'<a href="https://[^"]+">', "", page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    )  # links only, nothing fetched
    boxes = re.findall(r'<rect x="[\d.]+" y="[\d.]+" width="[\d.]+" height="[\d.]+" fill="([^"]+)" fill-opacity', page)
    assert (
        len(boxes) == 3 + 3 + 2 and sum(b.startswith("url(#hatch-") for b in boxes) == 1
    )  # hatched: the phone's tflite result keeps no rounds
    assert f"<title>{FP32}</title>" in page  # cut to fit in the drawing, whole in its tooltip
    # red: the regression (matrix and baseline table) and the eval that failed its bound; green: faster
    assert page.count('class="num bad"') == 3 and 'class="num good"' in page
    assert '<a href="https://app.aihub.qualcomm.com/jobs/jp4k/">jp4k</a>' in page and "javascript:" not in page


def test_old_results_without_the_new_fields_still_report(tmp_path):
    old = run(
        {"name": "pi", "kind": "ssh"},
        [
            {
                k: v
                for k, v in result(INT8, latency(None, p50=40.0, p90=44.0, mean=41.0, std=2.0)).items()
                if k != "parity"
            }
        ],
    )
    (tmp_path / "old.json").write_text(json.dumps(old))
    done = run_cli("report", str(tmp_path / "old.json"), "--out", str(tmp_path / "r"))
    assert done.returncode == 0, done.stderr
    tables = md_tables((tmp_path / "r" / "report.md").read_text())
    assert (
        "eval top-1" not in tables["Latency"][0] and "IQR" not in tables["Measurements"][0]
    )  # columns nobody filled are left out
    assert tables["Latency"][0]["pi (ssh) · old.json"] == "40.00 (44.00)"


# ---------------------------------------------------------------------------- malformed inputs: one line each


def _broken_result(**change) -> dict:
    r = result(INT8, latency(np.array([5.0, 5.1, 5.3])))
    for path, value in change.items():
        *parents, leaf = path.split("__")
        node = r
        for p in parents:
            node = node[p]
        node[leaf] = value
    return run({"name": "h", "kind": "local"}, [r])


EVAL_ROW = {
    "artifact": "a.onnx",
    "target": "onnx",
    "precision": "int8",
    "reference": {"top1": 0.9, "top5": 1.0},
    "artifact_metrics": {"top1": 0.9, "top5": 1.0},
    "drop_points": 0.0,
    "drop_ci95": [0.0, 0.0],
    "top1_agreement": 1.0,
    "bound": None,
    "passed": True,
}


@pytest.mark.parametrize(
    "bench, evaluation, message",
    [
        (
            _broken_result(latency_ms__samples="fast"),
            None,
            "results[0].latency_ms.samples is not a list of latencies in ms",
        ),
        (
            _broken_result(latency_ms__samples=[1.0, -2.0]),
            None,
            "results[0].latency_ms.samples is not a list of latencies in ms",
        ),
        (_broken_result(latency_ms__samples=[]), None, "results[0].latency_ms.samples is not a list"),
        (_broken_result(latency_ms__p50=-1.0), None, "results[0].latency_ms.p50 is negative"),
        (_broken_result(comparison={"change": 0.2}), None, "results[0].comparison has no verdict"),
        (
            _broken_result(comparison={"verdict": "regression", "change": "lots"}),
            None,
            "results[0].comparison.change is not a number",
        ),
        (
            _broken_result(comparison={"verdict": "regression", "ci95": [0.1]}),
            None,
            "results[0].comparison.ci95 is not [low, high]",
        ),
        (_broken_result(compute_units="NPU"), None, "results[0].compute_units is not an object of op counts"),
        (_broken_result(peak_memory_mb="40 MB"), None, "results[0].peak_memory_mb is not a number"),
        (_broken_result(versions=["onnx"]), None, "results[0].versions is not an object of package versions"),
        (_broken_result(parity__metrics__psnr_db="high"), None, "results[0].parity needs metrics.psnr_db"),
        (_broken_result(artifact=7), None, "results[0].artifact is not a path"),
        (_broken_result(aihub_job="j1"), None, "results[0].aihub_job is not {id, url}"),
        (_broken_result(peak_memory_range_mb=[1]), None, "results[0].peak_memory_range_mb is not [low, high]"),
        ({**_broken_result(), "baseline": "yesterday"}, None, "baseline is not an object"),
        (_broken_result(), [1, 2], "is not an eval result: no rows list"),
        (
            _broken_result(),
            {"data": "x", "n_images": 1, "rows": [{"artifact": "a.onnx"}]},
            "is not an eval result: rows[0] has no precision",
        ),
        (
            _broken_result(),
            {"data": "x", "n_images": 1, "rows": [{**EVAL_ROW, "drop_ci95": "narrow"}]},
            "rows[0].drop_ci95 is not [low, high]",
        ),
        (
            _broken_result(),
            {"data": "x", "n_images": 1, "rows": [{**EVAL_ROW, "artifact_metrics": {"top1": "90%"}}]},
            "rows[0].artifact_metrics needs the number top1",
        ),
        (_broken_result(), _broken_result(), "is a bench result, not an eval result"),
        (_broken_result(), "missing", "eval file"),
    ],
    ids=[
        "samples-text",
        "samples-negative",
        "samples-empty",
        "p50-negative",
        "comparison-no-verdict",
        "comparison-text",
        "comparison-ci",
        "compute-units",
        "peak-memory",
        "versions",
        "parity-psnr",
        "artifact-number",
        "aihub-job",
        "memory-range",
        "baseline",
        "eval-list",
        "eval-row-keys",
        "eval-ci",
        "eval-top1",
        "eval-is-bench",
        "eval-missing",
    ],
)
def test_malformed_input_is_one_line(tmp_path, bench, evaluation, message):
    (tmp_path / "bench.json").write_text(json.dumps(bench))
    args = ["report", str(tmp_path / "bench.json"), "--out", str(tmp_path / "r")]
    if evaluation is not None:
        if evaluation != "missing":
            (tmp_path / "eval.json").write_text(json.dumps(evaluation))
        args += ["--eval", str(tmp_path / "eval.json")]
    done = run_cli(*args)
    assert done.returncode == 2 and message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (tmp_path / "r").exists()  # refused before anything is written


def _leaves(node, prefix=()):
    """Every key / index path in a JSON document (lists longer than 5: the list itself, not each item)."""
    items = (
        node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) and len(node) < 6 else ()
    )
    for k, v in items:
        yield prefix + (k,)
        yield from _leaves(v, prefix + (k,))


def _replaced(doc, path, value):
    doc = json.loads(json.dumps(doc))
    node = doc
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return doc


def test_any_field_of_the_wrong_type_is_a_usage_error_never_an_internal_one(tmp_path):
    """Each field of a bench result and of an eval row, replaced in turn by each of a few wrong values: the report
    either copes or refuses with UsageError (the CLI's one line, exit 2) — never another exception (exit 3)."""
    from mvit_deploy.errors import UsageError
    from mvit_deploy.faces.report import write_report

    rng = np.random.default_rng(0)
    comparison = {
        "baseline_p50_ms": 5.0,
        "p50_ms": 5.1,
        "change": 0.02,
        "ci95": [0.0, 0.04],
        "p_value": 0.3,
        "verdict": "within noise",
    }
    bench = run(
        {"name": "h", "kind": "aihub", "cpu": "c", "cores": 2, "runtimes": {"a": "1"}},
        [
            result(
                INT8,
                latency(rounds(rng, 5.0, 8)),
                comparison=comparison,
                compute_units={"NPU": 3},
                peak_memory_mb=3.0,
                peak_memory_range_mb=[1.0, 2.0],
                aihub_job={"id": "j", "url": "https://x/"},
                versions={"onnx": "1"},
            )
        ],
        baseline={"file": "b.json", "max_regression": 0.1, "method": "m", "same_device": False, "device": "h"},
    )
    evaluation = {
        "data": "d",
        "n_images": 3,
        "passed": True,
        "rows": [{**EVAL_ROW, "artifact": INT8, "bound": {"value": 1.0}}],
    }
    crashed = []
    for which, doc in (("bench", bench), ("eval", evaluation)):
        for path in _leaves(doc):
            for wrong in (None, "x", [], {}, -1, True, [1, "a"], 0):
                (tmp_path / "b.json").write_text(
                    json.dumps(_replaced(bench, path, wrong) if which == "bench" else bench)
                )
                (tmp_path / "e.json").write_text(
                    json.dumps(_replaced(evaluation, path, wrong) if which == "eval" else evaluation)
                )
                try:
                    write_report([tmp_path / "b.json"], tmp_path / "out", [tmp_path / "e.json"])
                except UsageError:
                    pass
                except Exception as e:  # noqa: BLE001 - the point: nothing else may escape
                    crashed.append(f"{which} {path} = {wrong!r}: {type(e).__name__}: {e}")
    assert crashed == []


def test_an_eval_result_passed_as_a_bench_result_is_named(tmp_path):
    (tmp_path / "eval.json").write_text(json.dumps({"data": "x", "n_images": 1, "rows": [EVAL_ROW]}))
    done = run_cli("report", str(tmp_path / "eval.json"), "--out", str(tmp_path / "r"))
    assert done.returncode == 2 and "is not a bench result (schema None)" in done.stderr


# ---------------------------------------------------------------------------- in Chromium

OVERFLOW_CHECK = """<script>
window.addEventListener("load", () => document.fonts.ready.then(() => {
  const bad = [];
  let texts = 0, cells = 0;
  for (const t of document.querySelectorAll("svg text")) {
    texts++;
    const s = t.ownerSVGElement.getBoundingClientRect(), r = t.getBoundingClientRect();
    if (r.left < s.left - 0.5 || r.right > s.right + 0.5 || r.top < s.top - 0.5 || r.bottom > s.bottom + 0.5)
      bad.push("text " + JSON.stringify(t.textContent) + " spans x " + Math.round(r.left) + ".." + Math.round(r.right) + " in svg x " + Math.round(s.left) + ".." + Math.round(s.right));
  }
  for (const c of document.querySelectorAll("td, th")) {
    cells++;
    if (c.scrollWidth > c.clientWidth) bad.push("cell " + JSON.stringify(c.textContent.slice(0, 60)) + " needs " + c.scrollWidth + " px of " + c.clientWidth);
  }
  const pre = document.createElement("pre");
  pre.id = "overflow";
  pre.textContent = JSON.stringify({texts, cells, bad});
  document.body.appendChild(pre);
}));
</script>"""  # noqa: E501 (the page script is kept as written)


def chromium() -> str:
    found = (
        shutil.which("chromium")
        or shutil.which("chromium-browser")
        or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    )
    if not found:
        pytest.skip(reason="needs Debian's chromium to render the page (.ci/run installs it)")
    return found


def headless(page: Path, tmp_path: Path, *flags: str) -> subprocess.CompletedProcess:
    """Chromium with the flags scripts/report_screenshot.py uses for docs/report.png."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "report_screenshot", Path(__file__).parents[1] / "scripts" / "report_screenshot.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    argv = script.chromium_argv(chromium(), tmp_path / "chromium-profile", 1400, 2400, *flags, page.as_uri())
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def overflow(page: Path, tmp_path: Path) -> dict:
    """What the page's own layout says overflows: SVG text past its <svg>, table cells whose content is wider than they
    are."""
    checked = tmp_path / f"checked-{page.name}"
    checked.write_text(page.read_text().replace("</body>", OVERFLOW_CHECK + "</body>"))
    dom = headless(checked, tmp_path, "--virtual-time-budget=5000", "--dump-dom").stdout
    found = re.search(r'<pre id="overflow">(.*?)</pre>', dom, re.S)
    assert found, f"the check did not run: {dom[-500:]}"
    return json.loads(html.unescape(found.group(1)))


def test_report_renders_non_blank_with_the_verdict_colours(report, tmp_path):
    shot = tmp_path / "report.png"
    headless(report["page"], tmp_path, f"--screenshot={shot}")
    assert shot.exists(), "chromium wrote no screenshot"
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape[:2] == (2400, 1400)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 200, "a flat image: nothing rendered"
    assert (pixels.min(axis=2) < 235).mean() > 0.05, "almost all white"
    count = lambda rgb: int(np.all(pixels == rgb, axis=2).sum())  # noqa: E731
    assert count(BAD_BG) > 500 and count(GOOD_BG) > 500, (
        "the regression (red) and faster/pass (green) cells are not drawn"
    )


def test_no_label_leaves_its_svg_and_no_cell_overflows(report, tmp_path):
    found = overflow(report["page"], tmp_path)
    assert found["texts"] > 60 and found["cells"] > 100  # it looked at the whole page
    assert found["bad"] == []


def test_overflow_check_catches_a_label_past_the_edge(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text(
        '<!doctype html><html><body><svg xmlns="http://www.w3.org/2000/svg" width="200" height="60">'
        '<text x="190" y="30" font-size="12">mobilevit_xxs on the right edge</text><text x="10" y="30" '
        'font-size="12">fits</text></svg>'
        '<table style="table-layout: fixed; width: 120px"><tr><td style="overflow: hidden; white-space: nowrap">'
        f"{LONG}</td><td>ok</td></tr></table></body></html>"
    )
    found = overflow(page, tmp_path)
    assert found["texts"] == 2 and found["cells"] == 2 and len(found["bad"]) == 2, found
    assert found["bad"][0].startswith('text "mobilevit_xxs on the right edge"') and found["bad"][1].startswith(
        f'cell "{LONG[:60]}"'
    )


def test_the_real_runs_behind_docs_report_png_still_report(tmp_path):
    """tests/data/report/ holds the measured inputs of docs/report.png (scripts/report_screenshot.py)."""
    data = Path(__file__).parent / "data" / "report"
    runs = [data / f"vm-{n}.json" for n in ("make-demo-ci", "2threads-baseline", "2threads", "1thread")]
    done = run_cli(
        "report", *map(str, runs), "--eval", str(data / "eval-fashion-subset.json"), "--out", str(tmp_path / "r")
    )
    assert done.returncode == 0, done.stderr
    tables = md_tables((tmp_path / "r" / "report.md").read_text())
    row = by(tables["Measurements"], run="vm-1thread.json", artifact="`mobilevit_xxs-onnx-fp32.onnx`")
    samples = json.loads(runs[3].read_text())["results"][0]["latency_ms"]["samples"]
    assert row["p50"] == f"{np.median(samples):.2f}" and row["rounds kept"] == str(len(samples))
    recorded = {r["comparison"]["verdict"] for run in runs[2:] for r in json.loads(run.read_text())["results"]}
    assert {r["verdict"].strip("*") for r in tables["Against the baseline"]} == recorded
