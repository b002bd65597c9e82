"""The JSON files commands read back (bench results for report and --baseline, eval outputs, compute plans).

Each case runs the console script under a memory cap in an empty folder (hostile.refused_in_one_line).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hostile import refused_in_one_line

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
    pytest.param(["report", "{d}/binary.json", "--out", "{out}"], "is not valid JSON", id="report-binary"),
    pytest.param(["report", "{d}/missing.json", "--out", "{out}"], "does not exist", id="report-missing"),
    pytest.param(["report", "{d}/empty-folder", "--out", "{out}"], "is a directory", id="report-folder"),
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
