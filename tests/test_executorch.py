"""ExecuTorch: .pte on XNNPACK (fp32, int8) and the Core ML delegate, checked like every other target."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import run_cli

from mvit_deploy.artifact import manifest_path, tree_sha256
from mvit_deploy.models.families import bounds_for
from mvit_deploy.pipeline.export import export
from mvit_deploy.targets import ExportOptions, get_target

pytest.importorskip("executorch", reason="executorch (the lock's extra) exports and runs .pte files")

# precision, delegate: what test_export's coverage check counts for this target
CASES = {
    "executorch-fp32": dict(target="executorch", precision="fp32"),
    "executorch-int8": dict(
        target="executorch", precision="int8"
    ),  # 64 crops: with 16, XNNPACK refuses a requantization scale
    "executorch-fp16-coreml": dict(target="executorch", precision="fp16", target_options={"delegate": "coreml"}),
}


@pytest.fixture(scope="module")
def ptes(tmp_path_factory):
    """The trained Fashion-MNIST XXS (64 px: seconds, not minutes), each case exported with parity."""
    out = tmp_path_factory.mktemp("pte")
    return {
        case: export(ExportOptions(model="mobilevit_xxs", pretrained="fashion", out_dir=out, parity_n=32, **kw))
        for case, kw in CASES.items()
    }


def _torch_logits(x):
    import torch

    from mvit_deploy import load_model

    with torch.no_grad():
        return load_model("mobilevit_xxs", pretrained="fashion").eval()(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("case", list(CASES))
def test_every_pte_passes_parity_and_records_its_delegation(case, ptes):
    r = ptes[case]
    assert r.kept and r.artifact.suffix == ".pte" and r.artifact.read_bytes()[4:8] == b"ET12"
    assert r.parity.passed, r.parity.failures
    d = r.manifest.extra["delegation"]
    assert d["nodes_delegated"] <= d["nodes_total"] and d["share"] == pytest.approx(
        d["nodes_delegated"] / d["nodes_total"], abs=1e-4
    )
    # measured: XNNPACK takes 67 % of the fp32 graph and 77 % of the int8 one (layer norms, slices and
    # expands stay in the portable kernels); Core ML takes all but the output node (444 of 445)
    floor = {"executorch-fp32": 0.6, "executorch-int8": 0.7, "executorch-fp16-coreml": 0.99}[case]
    assert d["share"] >= floor, d


def test_fp32_pte_matches_pytorch_within_the_fp32_bound(ptes):
    """Independent of parity's own code: the runtime's logits against the eager model, computed here."""
    from mvit_deploy.pipeline.parity import parity_inputs
    from mvit_deploy.targets import load_runner

    r = ptes["executorch-fp32"]
    x = parity_inputs(r.manifest, None, 24)  # the shipped Fashion-MNIST parity images
    ref, got = _torch_logits(x), load_runner(r.artifact, r.manifest)(x)
    assert np.abs(got - ref).max() / np.abs(ref).max() <= bounds_for("fp32", "mobilevit")[0].value
    assert (got.argmax(1) == ref.argmax(1)).all()


def test_int8_pte_is_int8_and_smaller(ptes):
    fp32, int8 = ptes["executorch-fp32"], ptes["executorch-int8"]
    assert int8.manifest.bytes < 0.45 * fp32.manifest.bytes  # measured 1.30 MB vs 3.97 MB
    assert int8.manifest.calibration["samples"] == 64
    assert int8.parity.metrics["psnr_db"] >= bounds_for("int8", "mobilevit")[0].value


def test_coreml_payload_unpacks_to_the_same_files_as_executorchs_own_reader(ptes, tmp_path):
    """Our torch-free unpacker against executorch's C++ one (an independent implementation)."""
    from executorch.backends.apple.coreml import executorchcoreml

    from mvit_deploy.targets.executorch import coreml_payload, unpack_coreml_payload

    payload = coreml_payload(ptes["executorch-fp16-coreml"].artifact)
    ours = unpack_coreml_payload(payload, tmp_path / "ours")
    assert ours.name == "model.mlpackage"
    (tmp_path / "theirs").mkdir()
    assert executorchcoreml.unflatten_directory_contents(payload, str(tmp_path / "theirs"))
    theirs = {
        p.relative_to(tmp_path / "theirs"): p.read_bytes() for p in (tmp_path / "theirs").rglob("*") if p.is_file()
    }
    mine = {p.relative_to(tmp_path / "ours"): p.read_bytes() for p in (tmp_path / "ours").rglob("*") if p.is_file()}
    assert mine == theirs and any(str(k).endswith("model.mlmodel") for k in mine)


def test_a_broken_pte_fails_parity(ptes, tmp_path):
    """A deliberately wrong conversion (the classifier's bias dropped) runs, and parity says FAIL."""
    import torch

    from mvit_deploy import load_model

    good = ptes["executorch-fp32"]
    model = load_model("mobilevit_xxs", pretrained="fashion").eval()
    with torch.no_grad():
        classifier = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == 10][-1]
        classifier.bias.zero_()
    opts = get_target("executorch").resolve(ExportOptions(model="mobilevit_xxs", target="executorch", out_dir=tmp_path))
    bad = tmp_path / good.artifact.name
    get_target("executorch").convert(model, torch.zeros(1, 3, 64, 64), opts, bad)
    manifest = json.loads(good.manifest_path.read_text())
    manifest["sha256"] = tree_sha256(bad)
    manifest_path(bad).write_text(json.dumps(manifest))
    result = run_cli("parity", str(bad), "--json")
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert not report["passed"] and report["metrics"]["max_rel"] > 1e-3


def test_a_delegate_without_the_precision_is_refused_before_work(tmp_path):
    result = run_cli(
        "export",
        "--target",
        "executorch",
        "--delegate",
        "coreml",
        "--precision",
        "int8",
        "--out",
        str(tmp_path / "out"),
    )
    assert (
        result.returncode == 2
        and "the coreml delegate does not take precision int8 — use --delegate xnnpack" in result.stderr
    )
    assert not (tmp_path / "out").exists()


def test_bench_times_xnnpack_ptes_and_skips_the_coreml_one_here(ptes, tmp_path):
    import sys

    out = tmp_path / "bench.json"
    arts = [str(ptes[c].artifact) for c in CASES]
    result = run_cli("bench", *arts, "--iters", "3", "--warmup", "1", "--json", str(out))
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert sorted(Path(r["artifact"]).name for r in data["results"]) == sorted(Path(a).name for a in arts[:2])
    assert all(r["runtime"] == "executorch" and r["latency_ms"]["mean"] > 0 for r in data["results"])
    if sys.platform != "darwin":
        assert data["skipped"][0]["reason"].startswith("a Core ML-delegated .pte runs only on Apple devices")


def test_executor_runner_output_is_parsed_from_its_documented_format():
    """tests/fixtures/executor_runner_posix.txt is written from executor_runner.cpp's ET_LOG format strings
    (posix PAL prefix included; line numbers illustrative), not captured on a phone."""
    from mvit_deploy.targets.executorch import parse_executor_runner_output

    text = (Path(__file__).parent / "fixtures" / "executor_runner_posix.txt").read_text()
    parsed = parse_executor_runner_output(text)
    times = np.array([6.180211, 4.497306, 4.362840, 4.480772, 4.405519])
    assert parsed["runs"] == 5 and parsed["load_ms"] == pytest.approx(30.612045)
    assert parsed["latency_ms"]["mean"] == pytest.approx(times.mean()) == pytest.approx(23.926648 / 5, rel=1e-5)
    assert parsed["latency_ms"]["p50"] == pytest.approx(4.480772) and parsed["latency_ms"]["min"] == pytest.approx(
        4.362840
    )
    old = "\n".join(line for line in text.splitlines() if "Iteration" not in line)  # builds before v1.3: the total only
    assert (
        parse_executor_runner_output(old)["latency_ms"]["mean"] == pytest.approx(23.926648 / 5)
        and parse_executor_runner_output(old)["latency_ms"]["p50"] is None
    )
    from mvit_deploy.errors import UsageError

    with pytest.raises(UsageError, match="printed no timing line"):
        parse_executor_runner_output("E 00:00:00.000100 executorch:executor_runner.cpp:200] Failed to load program")


def test_adb_command_for_a_pte():
    from mvit_deploy.bench.adb import AdbDevice

    cmd = AdbDevice.parse("adb:R58M").benchmark_command(
        get_target("executorch"), "/data/local/tmp/mvit-deploy/m.pte", "/home/me/executor_runner", 4, 5, 50
    )
    assert cmd[:4] == ["adb", "-s", "R58M", "shell"]
    assert (
        cmd[4] == "/data/local/tmp/mvit-deploy/executor_runner --model_path=/data/local/tmp/mvit-deploy/m.pte "
        "--num_executions=50 --cpu_threads=4 --print_output=none"
    )
