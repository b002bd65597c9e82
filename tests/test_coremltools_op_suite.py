"""coremltools' own MIL op tests, run with our executor in place of Core ML's prediction.

The programs, inputs, expected outputs and tolerances are coremltools' (the package ships them);
scripts/coreml_op_suite.py swaps the prediction step. This module runs its fast subset once in a
child process (a nested pytest session) and checks the outcome of every case. The whole
registry run is `.venv/bin/python scripts/coreml_op_suite.py` (see README).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("coremltools", reason="coremltools (the lock's [coreml] extra) reads and converts .mlpackage files")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def suite(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("op_suite") / "cases.jsonl"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "coreml_op_suite.py"), "--subset", "fast", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=1200,
        cwd=ROOT,
    )
    assert out.exists(), f"the op suite wrote no results:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return [json.loads(line) for line in out.read_text().splitlines()]


def cases(suite, family: str, outcome: str | None = None) -> list[dict]:
    return [c for c in suite if c["family"] == family and (outcome is None or c["outcome"] == outcome)]


def test_no_wrong_number_and_no_raw_exception(suite):
    bad = [
        f"{c['outcome']}: {c['nodeid']}: {c.get('message', '')}"
        for c in suite
        if c["outcome"] in ("mismatch", "raw", "other")
    ]
    assert not bad, "\n".join(bad[:20])
    reached = Counter(c["outcome"] for c in suite if c["outcome"] in ("pass", "refused"))
    assert reached["pass"] >= 200, reached  # the subset exercises a few hundred programs, not a handful


def test_layer_norm_every_axis_set_and_dynamic_shape(suite):
    """Non-trailing axes with gamma / beta (e.g. rank 3, axes [0, 2]) were off by up to 278 before."""
    passed = cases(suite, "TestNormalizationLayerNorm", "pass")
    assert len(passed) >= 40
    assert not cases(suite, "TestNormalizationLayerNorm", "refused")
    assert any("dynamic_shape" in c["nodeid"] for c in passed), "the RangeDim layer_norm case did not pass"


def test_flexible_inputs_run(suite):
    """Programs whose inputs have symbolic dimensions (converted with RangeDim) take the actual shape."""
    symbolic = [c for c in suite if "symbolic" in c["nodeid"] or "dynamic_shape" in c["nodeid"]]
    passed = [c for c in symbolic if c["outcome"] == "pass"]
    assert len(passed) >= 8, Counter(c["outcome"] for c in symbolic)
    assert not [c for c in symbolic if c["outcome"] == "refused" and "shape" in c.get("message", "")]


@pytest.mark.parametrize(
    "op",
    [
        "space_to_depth",
        "depth_to_space",
        "pixel_shuffle",
        "pixel_unshuffle",
        "pad",
        "stack",
        "einsum",
        "layer_norm",
        "linear",
        "matmul",
        "softmax",
        "silu",
        "concat",
        "transpose",
        "reshape",
    ],
)
def test_each_op_passes_its_cases(suite, op):
    ran = [c for c in suite if op in c["ops"]]
    assert ran, f"no coremltools case ran a program with '{op}'"
    outcomes = Counter(c["outcome"] for c in ran)
    assert outcomes["pass"] >= 2 and set(outcomes) <= {"pass"}, outcomes


def test_every_op_our_exports_emit_passes_coremltools_cases(suite, tmp_path):
    """The op types of the Core ML programs we write (both layouts) each pass coremltools' own cases here."""
    from mvit_deploy.pipeline.export import export
    from mvit_deploy.targets import ExportOptions
    from mvit_deploy.targets.coreml_exec.program import load_program

    emitted = set()
    for layout in ("standard", "ane"):
        opts = ExportOptions(
            model="mobilevit_xxs",
            target="coreml",
            input_size=64,
            target_options={"coreml_layout": layout},
            out_dir=tmp_path / layout,
        )
        emitted |= {o.type for o in load_program(export(opts, run_parity=False).artifact).operations}
    assert {"conv", "einsum", "layer_norm", "softmax", "pixel_unshuffle"} <= emitted
    passing = {op for c in suite if c["outcome"] == "pass" for op in c["ops"]}
    # const: every case holds them; classify: added by ClassifierConfig, which no op test builds
    # (tests/test_coreml_ops.py checks it against the labels)
    missing = emitted - passing - {"const", "classify"}
    assert not missing, f"emitted by our exports, passed by no coremltools case in the fast subset: {sorted(missing)}"
