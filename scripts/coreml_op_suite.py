"""coremltools' own MIL op tests, with our reference executor as the Core ML runtime.

    .venv/bin/python scripts/coreml_op_suite.py                 # every case of the ops we implement
    .venv/bin/python scripts/coreml_op_suite.py --ops layer_norm conv --json out.json
    .venv/bin/python scripts/coreml_op_suite.py --subset fast    # what `make test` runs

coremltools ships its op tests (``coremltools/converters/mil/mil/ops/tests/iOS14..iOS18``):
each builds a MIL program, converts it to an ML program and compares Core ML's prediction with
the test's expected outputs under the test's tolerances. Off macOS the prediction step is
skipped; this plugin puts :class:`MILExecutor` in its place (mlprogram backend, fp32 and fp16,
every opset) and keeps the programs, inputs, expected outputs and tolerances as they are.

Every case that reaches the prediction step ends in one of:

- ``pass``      the executor's outputs match within the test's tolerances
- ``fp16-data`` the program holds fp16 inputs, weights or decompressed constants, but the test
                computed its expected output at another precision (from the unrounded fp32 values,
                or in numpy fp16 arithmetic) under fp32 tolerances, which a 1-ulp fp16 difference
                fails; matches within 2^-9 of the output's scale. Counted apart, not as a pass.
- ``mismatch``  the executor ran and produced a wrong number (a defect: must be zero)
- ``refused``   the executor refused by name (an op or attribute combination it does not implement)
- ``raw``       the executor raised anything else (a defect: must be zero)
- ``other``     the test failed after a successful, matching prediction (its own extra checks)

Cases that never reach the prediction step (skipped, or failing in coremltools' converter on
this platform) are counted apart, per op, and are no statement about the executor.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest

SUITE = "coremltools.converters.mil.mil.ops.tests"
# The test classes of the ops the executor implements (mvit_deploy/targets/coreml_exec/ops.py): the
# default run. `--subset all` runs the whole installed suite (~19,700 cases, hours on 2 cores).
REGISTRY = [
    "iOS14/test_activation.py",
    "iOS17/test_activation.py",
    "iOS14/test_control_flow.py::TestSelect",
    "iOS14/test_control_flow.py::TestConst",
    "iOS14/test_conv.py",
    "iOS16/test_conv.py",
    "iOS17/test_conv.py",
    "iOS14/test_elementwise_binary.py",
    "iOS14/test_elementwise_unary.py",
    "iOS15/test_elementwise_unary.py",
    "iOS17/test_elementwise_unary.py",
    "iOS14/test_linear.py",
    "iOS17/test_linear.py",
    "iOS14/test_normalization.py::TestNormalizationBatchNorm",
    "iOS17/test_normalization.py::TestNormalizationBatchNorm",
    "iOS14/test_normalization.py::TestNormalizationInstanceNorm",
    "iOS17/test_normalization.py::TestNormalizationInstanceNorm",
    "iOS14/test_normalization.py::TestNormalizationLayerNorm",
    "iOS17/test_normalization.py::TestNormalizationLayerNorm",
    "iOS14/test_pool.py",
    "iOS14/test_reduction.py",
    "iOS17/test_reduction.py",
    "iOS14/test_scatter_gather.py::TestGather",
    "iOS16/test_scatter_gather.py::TestGather",
    "iOS17/test_scatter_gather.py::TestGather",
    "iOS14/test_scatter_gather.py::TestGatherAlongAxis",
    "iOS16/test_scatter_gather.py::TestGatherAlongAxis",
    "iOS17/test_scatter_gather.py::TestGatherAlongAxis",
    "iOS14/test_scatter_gather.py::TestGatherNd",
    "iOS16/test_scatter_gather.py::TestGatherNd",
    "iOS17/test_scatter_gather.py::TestGatherNd",
    "iOS14/test_tensor_operation.py::TestConcat",
    "iOS14/test_tensor_operation.py::TestIdentity",
    "iOS14/test_tensor_operation.py::TestPad",
    "iOS14/test_tensor_operation.py::TestShape",
    "iOS14/test_tensor_operation.py::TestTile",
    "iOS14/test_tensor_operation.py::TestTopK",
    "iOS16/test_tensor_operation.py::TestTopK",
    "iOS17/test_tensor_operation.py::TestTopK",
    "iOS14/test_tensor_transformation.py::TestConcat",
    "iOS14/test_tensor_transformation.py::TestDepthToSpace",
    "iOS14/test_tensor_transformation.py::TestSpaceToDepth",
    "iOS14/test_tensor_transformation.py::TestExpandDims",
    "iOS17/test_tensor_transformation.py::TestExpandDims",
    "iOS14/test_tensor_transformation.py::TestPixelShuffle",
    "iOS16/test_tensor_transformation.py::TestPixelUnshuffle",
    "iOS14/test_tensor_transformation.py::TestReshape",
    "iOS15/test_tensor_transformation.py::TestReshape",
    "iOS17/test_tensor_transformation.py::TestReshape",
    "iOS14/test_tensor_transformation.py::TestSliceByIndex",
    "iOS17/test_tensor_transformation.py::TestSliceByIndex",
    "iOS14/test_tensor_transformation.py::TestSliceBySize",
    "iOS17/test_tensor_transformation.py::TestSliceBySize",
    "iOS14/test_tensor_transformation.py::TestSplit",
    "iOS14/test_tensor_transformation.py::TestSqueeze",
    "iOS17/test_tensor_transformation.py::TestSqueeze",
    "iOS14/test_tensor_transformation.py::TestStack",
    "iOS14/test_tensor_transformation.py::TestTranspose",
    "iOS17/test_tensor_transformation.py::TestTranspose",
    "iOS16/test_constexpr_ops.py",
    "iOS18/test_compression.py::TestConstexprBlockwiseDequantize",
    "iOS18/test_compression.py::TestConstexprLut",
    "iOS18/test_compression.py::TestConstexprSparseToDense",
    "iOS17/test_quantization.py",
]
# make test's share: the op families MobileViT's exports and the planned ANE layout emit, layer_norm
# over every axis set, and the flexible-input cases; ~2 minutes on 2 cores.
FAST = [
    "iOS14/test_normalization.py::TestNormalizationLayerNorm",
    "iOS14/test_linear.py",
    "iOS14/test_activation.py::TestSiLU",
    "iOS14/test_activation.py::TestSoftmax",
    "iOS14/test_tensor_transformation.py::TestPixelShuffle",
    "iOS16/test_tensor_transformation.py::TestPixelUnshuffle",
    "iOS14/test_tensor_transformation.py::TestSpaceToDepth",
    "iOS14/test_tensor_transformation.py::TestDepthToSpace",
    "iOS14/test_tensor_transformation.py::TestReshape",
    "iOS14/test_tensor_transformation.py::TestTranspose",
    "iOS14/test_tensor_transformation.py::TestExpandDims::test_builder_to_backend_symbolic",
    "iOS14/test_tensor_transformation.py::TestSqueeze",
    "iOS14/test_tensor_operation.py::TestShape",
    "iOS14/test_tensor_transformation.py::TestStack",
    "iOS14/test_tensor_operation.py::TestConcat",
    "iOS14/test_tensor_operation.py::TestPad",
    "iOS14/test_elementwise_binary.py::TestElementwiseBinary",
    "iOS14/test_reduction.py",
    "iOS14/test_normalization.py::TestNormalizationBatchNorm",
    "iOS14/test_conv.py::TestConv::test_conv_bias_fusion",
    "iOS14/test_tensor_transformation.py::TestSliceByIndex",
    "iOS14/test_tensor_transformation.py::TestSplit",
]


def _install_executor() -> None:
    """Make coremltools' comparison helpers believe they can predict, and predict with our executor."""
    import numpy as np
    from coremltools.converters.mil import testing_utils
    from coremltools.models import utils as coremltoolsutils

    from mvit_deploy.errors import MvitDeployError
    from mvit_deploy.targets.coreml_exec import FLOAT16, MILExecutor, UnsupportedOpError

    def predict(mlmodel, input_key_values, state=None):
        RECORD["reached"] = True
        if state is not None:
            raise _Refused("stateful programs (read_state / write_state) are not implemented by the reference executor")
        path = mlmodel.package_path
        try:
            executor = MILExecutor(path)
            RECORD["ops"] = sorted({o.type for o in executor.program.operations if o.type != "const"})
            RECORD["fp16_data"] = any(i.data_type == FLOAT16 for i in executor.program.inputs) or any(
                (o.type == "const" or o.type.startswith("constexpr_")) and o.outputs and o.outputs[0][1] == FLOAT16
                for o in executor.program.operations
            )
            inputs = {k: np.asarray(v) for k, v in input_key_values.items()}
            outputs, _ = executor.run(inputs)
        except UnsupportedOpError as e:
            RECORD["outcome"] = "refused"
            RECORD["message"] = str(e)
            raise
        except MvitDeployError as e:
            RECORD["outcome"] = "refused" if getattr(e, "refusal", False) else "raw"
            RECORD["message"] = str(e)
            raise
        except Exception as e:
            RECORD["outcome"] = "raw"
            RECORD["message"] = f"{type(e).__name__}: {e}"
            raise
        RECORD["predicted"] = True
        return {k: (v if not isinstance(v, np.ndarray) else v) for k, v in outputs.items()}

    from coremltools.converters.mil.mil.ops.tests import testing_utils as op_testing_utils

    real_compare = testing_utils.compare_backend

    def compare(mlmodel, input_key_values, expected_outputs, dtype="fp32", atol=1e-04, rtol=1e-05, **kw):
        try:
            return real_compare(mlmodel, input_key_values, expected_outputs, dtype=dtype, atol=atol, rtol=rtol, **kw)
        except AssertionError:
            if not (RECORD.get("predicted") and RECORD.get("fp16_data") and dtype == "fp32"):
                raise
            # The program holds fp16 inputs, weights or decompressed constants, but the test computed its expected
            # output at another precision (from the unrounded fp32 values, or in numpy fp16 arithmetic where the
            # program adds in fp32), under fp32 tolerances: no runtime can meet that. Re-compare within a few fp16
            # ulps of the output's scale, and count the case apart ("fp16-data"), never as a pass.
            scale = (
                max(float(np.max(np.abs(np.asarray(v, np.float64)))) for v in expected_outputs.values() if np.size(v))
                or 1.0
            )
            real_compare(
                mlmodel,
                input_key_values,
                expected_outputs,
                dtype=dtype,
                atol=max(atol, 2**-9 * scale),
                rtol=max(rtol, 2**-9),
                **kw,
            )
            RECORD["outcome"] = "fp16-data"

    testing_utils._IS_MACOS = True
    testing_utils.run_core_ml_predict = predict
    op_testing_utils.compare_backend = compare
    coremltoolsutils._macos_version = lambda: (15, 0)  # read only by the comparison helpers' macOS gate here


class _Refused(Exception):
    pass


RECORD: dict = {}
RESULTS: list[dict] = []


def _op_of(nodeid: str) -> str:
    """TestNormalizationLayerNorm -> a readable family label (the program's ops are recorded too)."""
    parts = nodeid.split("::")
    return parts[1] if len(parts) > 1 else parts[0]


def pytest_configure(config):
    _install_executor()


def pytest_runtest_logstart(nodeid, location):
    RECORD.clear()  # before setup: a case skipped there must not inherit the previous case's record


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" and not (report.when == "setup" and report.skipped):
        return
    entry = {"nodeid": item.nodeid, "family": _op_of(item.nodeid), "ops": RECORD.get("ops", [])}
    if report.skipped:
        entry["outcome"] = "skipped"
    elif not RECORD.get("reached"):
        entry["outcome"] = "not-reached" if report.failed else "no-prediction"
    elif "outcome" in RECORD:
        entry["outcome"] = RECORD["outcome"]
    elif report.passed:
        entry["outcome"] = "pass"
    else:
        exc = call.excinfo
        entry["outcome"] = (
            "mismatch" if exc is not None and exc.errisinstance(AssertionError) and RECORD.get("predicted") else "other"
        )
    if entry["outcome"] in ("mismatch", "raw", "other", "refused", "not-reached"):
        text = RECORD.get("message") or (str(call.excinfo.value) if call.excinfo else "")
        entry["message"] = text.strip().splitlines()[0][:300] if text.strip() else ""
    RESULTS.append(entry)
    path = os.environ.get("MVIT_OP_SUITE_JSON")
    if path:  # one JSON line per case, written as it ends: a long run can be read while it goes
        with open(path, "a") as f:
            f.write(json.dumps(entry) + "\n")


def _suite_dir() -> Path:
    import coremltools

    return Path(coremltools.__file__).parent / "converters" / "mil" / "mil" / "ops" / "tests"


def read_results(path: Path) -> list[dict]:
    return (
        [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
        if Path(path).exists()
        else []
    )


def summarize(results: list[dict]) -> tuple[dict, dict]:
    per_family: dict[str, Counter] = defaultdict(Counter)
    for r in results:
        per_family[r["family"]][r["outcome"]] += 1
    totals = Counter(r["outcome"] for r in results)
    return per_family, totals


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subset", choices=["registry", "fast", "all"], default="registry")
    parser.add_argument(
        "--select", nargs="*", default=None, help="test paths relative to the suite (iOS14/test_linear.py::TestLinear)"
    )
    parser.add_argument("-k", default=None, help="pytest -k expression")
    parser.add_argument("--json", default=None, help="write every case's outcome here (JSON lines)")
    parser.add_argument("--failures", action="store_true", help="list every mismatch / raw case")
    parser.add_argument(
        "--report", default=None, help="print the tables of an earlier run's --json file, without running anything"
    )
    args = parser.parse_args(argv)
    if args.report:
        return report(read_results(Path(args.report)), args.failures)

    os.environ["PYMIL_TEST_TARGETS"] = "mlprogram"
    os.environ["INCLUDE_MIL_FP32_UNIT_TESTS"] = "1"
    out = (
        Path(args.json) if args.json else Path(os.environ.get("TMPDIR", "/tmp")) / f"coreml_op_suite_{os.getpid()}.json"
    )
    os.environ["MVIT_OP_SUITE_JSON"] = str(out)
    out.unlink(missing_ok=True)
    root = _suite_dir()
    if args.select:
        targets = [str(root / s) for s in args.select]
    elif args.subset == "fast":
        targets = [str(root / s) for s in FAST]
    elif args.subset == "registry":
        targets = [str(root / s) for s in REGISTRY]
    else:
        targets = [str(root / d) for d in ("iOS14", "iOS15", "iOS16", "iOS17", "iOS18")]
    pytest_args = [
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "coreml_op_suite",
        "--no-header",
        "-rN",
        "--tb=no",
        "-o",
        "addopts=",
        "-W",
        "ignore",
        "--rootdir",
        str(root),
        *targets,
    ]
    if args.k:
        pytest_args += ["-k", args.k]
    sys.path.insert(0, str(Path(__file__).parent))
    pytest.main(pytest_args)
    return report(read_results(out), args.failures)


def report(results: list[dict], failures: bool) -> int:
    per_family, totals = summarize(results)
    cols = ["pass", "fp16-data", "mismatch", "raw", "refused", "other", "not-reached", "no-prediction", "skipped"]
    print(f"\n{'test class':<46}" + "".join(f"{c:>14}" for c in cols))
    for family in sorted(per_family):
        c = per_family[family]
        print(f"{family:<46}" + "".join(f"{c[k]:>14}" for k in cols))
    print(f"{'TOTAL':<46}" + "".join(f"{totals[k]:>14}" for k in cols))
    per_op: dict[str, Counter] = defaultdict(Counter)  # every case whose program ran the op (casts and consts aside)
    for r in results:
        for op in set(r["ops"]) - {"const", "cast"}:
            per_op[op][r["outcome"]] += 1
    op_cols = ["pass", "fp16-data", "mismatch", "raw", "refused", "other"]
    print(f"\n{'MIL op (cases whose program ran it)':<46}" + "".join(f"{c:>14}" for c in op_cols))
    for op in sorted(per_op):
        print(f"{op:<46}" + "".join(f"{per_op[op][k]:>14}" for k in op_cols))
    if failures:
        for r in results:
            if r["outcome"] in ("mismatch", "raw", "other"):
                print(f"{r['outcome']:>9}  {r['nodeid']}  {r.get('message', '')}")
    return 1 if totals["mismatch"] or totals["raw"] else 0


if __name__ == "__main__":
    sys.exit(main())
