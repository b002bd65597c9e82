"""The static Neural Engine check: purpose-built Core ML programs that break each rule, and one that breaks none."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

ct = pytest.importorskip(
    "coremltools", reason="coremltools (the lock's [coreml] extra) reads and converts .mlpackage files"
)
from coremltools.converters.mil import Builder as mb  # noqa: E402
from coremltools.converters.mil.mil import types  # noqa: E402

from mvit_deploy.targets.coreml_exec import ane  # noqa: E402
from mvit_deploy.targets.coreml_exec.program import load_program  # noqa: E402

RNG = np.random.default_rng(0)


def save(tmp_path, build, shape=(1, 64, 1, 64), fp16=True, inputs=None, name=None):
    prog = mb.program(input_specs=[mb.TensorSpec(shape=shape)], opset_version=ct.target.iOS17)(build)
    model = ct.convert(
        prog,
        convert_to="mlprogram",
        minimum_deployment_target=ct.target.iOS17,
        inputs=inputs,
        compute_precision=ct.precision.FLOAT16 if fp16 else ct.precision.FLOAT32,
    )
    path = tmp_path / f"{name or len(list(tmp_path.iterdir()))}.mlpackage"
    model.save(str(path))
    return path


def rules(report) -> dict[str, int]:
    return {k: v for k, v in report.by_rule().items() if v}


def clean(x):
    w = RNG.standard_normal((64, 64, 1, 1)).astype(np.float32)
    return mb.relu(x=mb.conv(x=x, weight=w))


def test_a_program_in_the_ane_layout_breaks_no_rule(tmp_path):
    """(B, C, 1, S) with S = 64, a 1x1 conv, fp16: nothing to report."""
    report = ane.check(save(tmp_path, clean))
    assert report.findings == [] and report.ops >= 2


def test_fp32_program_is_one_hard_island(tmp_path):
    report = ane.check(save(tmp_path, clean, fp16=False))
    assert rules(report) == {"fp32-compute": 1}
    assert report.hard == 1 and "2 op(s) computing in fp32" in report.findings[0].detail


def test_fp32_island_inside_an_fp16_program(tmp_path):
    def build(x):
        y = mb.relu(x=x)
        z = mb.cast(x=mb.softmax(x=mb.cast(x=y, dtype="fp32"), axis=1), dtype="fp16")
        return mb.relu(x=z)

    prog = mb.program(
        input_specs=[mb.TensorSpec(shape=(1, 64, 1, 64), dtype=types.fp16)], opset_version=ct.target.iOS17
    )(build)
    model = ct.convert(
        prog,
        convert_to="mlprogram",
        minimum_deployment_target=ct.target.iOS17,
        compute_precision=ct.precision.FLOAT32,
        pass_pipeline=ct.PassPipeline.EMPTY,
    )
    model.save(str(tmp_path / "island.mlpackage"))
    report = ane.check(tmp_path / "island.mlpackage")
    assert rules(report) == {"fp32-compute": 1}
    assert "'softmax'" in report.findings[0].op


def test_range_dim_is_hard_enumerated_shapes_are_not(tmp_path):
    from coremltools.converters.mil.mil import get_new_symbol

    def program(shape_spec):
        prog = mb.program(
            input_specs=[mb.TensorSpec(shape=(1, 64, 1, get_new_symbol()))], opset_version=ct.target.iOS17
        )(lambda x: mb.relu(x=x))
        model = ct.convert(
            prog,
            convert_to="mlprogram",
            minimum_deployment_target=ct.target.iOS17,
            inputs=[ct.TensorType(name="x", shape=shape_spec)],
        )
        path = tmp_path / f"flex{len(list(tmp_path.iterdir()))}.mlpackage"
        model.save(str(path))
        return ane.check(path)

    ranged = program((1, 64, 1, ct.RangeDim(32, 256, default=64)))
    assert rules(ranged) == {"range-dim-input": 1} and ranged.hard == 1
    assert "[32, 256]" in ranged.findings[0].detail
    assert rules(program(ct.EnumeratedShapes(shapes=[(1, 64, 1, 64), (1, 64, 1, 128)], default=(1, 64, 1, 64)))) == {}


def test_rank_5_costs_and_rank_6_is_hard(tmp_path):
    path = save(tmp_path, lambda x: mb.reshape(x=mb.relu(x=x), shape=[1, 2, 32, 1, 64]))
    report = ane.check(path)
    assert rules(report) == {"rank-5": 2}  # the reshape, and the cast to the fp32 output after it
    # coremltools refuses to write rank 6 (its own check), so the rank-6 program is the rank-5 one with a longer shape
    program = load_program(path)
    op = next(o for o in program.operations if o.type == "reshape")
    program.operations[op.index] = replace(op, shapes=[(1, 2, 32, 1, 1, 64)])
    assert rules(ane.check_program(program)) == {"rank>5": 1, "rank-5": 1}


def test_last_axis_padding_counts_the_bytes(tmp_path):
    report = ane.check(save(tmp_path, lambda x: mb.relu(x=x), shape=(1, 4, 10, 8)))
    assert rules(report) == {"last-axis-padding": 3}  # the input cast to fp16, the relu, the output cast
    # 40 rows of 8 fp16 values = 16 bytes each, each padded to 64: 48 extra bytes per row
    assert [f.bytes_extra for f in report.findings] == [40 * 48] * 3 and report.summary()[
        "last_axis_padding_bytes"
    ] == 3 * 1920


def test_last_axis_moves(tmp_path):
    report = ane.check(save(tmp_path, lambda x: mb.transpose(x=mb.relu(x=x), perm=[0, 3, 2, 1])))
    assert rules(report) == {"last-axis-move": 1}
    assert (
        rules(ane.check(save(tmp_path, lambda x: mb.transpose(x=mb.relu(x=x), perm=[0, 2, 1, 3])))) == {}
    )  # last axis stays
    report = ane.check(save(tmp_path, lambda x: mb.reshape(x=mb.relu(x=x), shape=[1, 64, 2, 32])))
    assert rules(report) == {"last-axis-move": 1}


def test_attention_softmax_over_the_last_axis(tmp_path):
    def attention(axis):
        def build(x):  # x: (1, 2, 64, 32) = (B, heads, S, d)
            scores = mb.matmul(x=x, y=x, transpose_y=True)
            return mb.matmul(x=mb.softmax(x=mb.mul(x=scores, y=0.125), axis=axis), y=x)

        return ane.check(save(tmp_path, build, shape=(1, 2, 64, 32)))

    assert rules(attention(-1)) == {"attention-layout": 1}
    assert rules(attention(1)) == {}


def test_reported_ops(tmp_path):
    w = RNG.standard_normal((64, 64, 3, 3)).astype(np.float32)
    report = ane.check(
        save(tmp_path, lambda x: mb.conv(x=x, weight=w, dilations=[2, 2], pad_type="same"), shape=(1, 64, 64, 64))
    )
    assert rules(report) == {"reported-op": 1} and "dilated conv" in report.findings[0].detail
    report = ane.check(save(tmp_path, lambda x: mb.gather(x=x, indices=np.array([0, 3], np.int32), axis=1)))
    assert rules(report) == {"reported-op": 1}
    report = ane.check(
        save(
            tmp_path,
            lambda x: mb.max_pool(x=x, kernel_sizes=[15, 15], strides=[1, 1], pad_type="same"),
            shape=(1, 64, 32, 64),
        )
    )
    assert rules(report) == {"reported-op": 1}


def test_every_rule_is_exercised_here():
    source = open(__file__).read()
    assert not [r for r in ane.RULES if f'"{r}"' not in source]


# ---------------------------------------------------------------------------- --coreml-layout ane


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_ane_layout_export_passes_parity_and_drops_the_attention_findings(tmp_path, precision):
    from mvit_deploy.pipeline.export import export
    from mvit_deploy.targets import ExportOptions

    reports = {}
    for layout in ("standard", "ane"):
        opts = ExportOptions(
            model="mobilevit_xxs",
            target="coreml",
            precision=precision,
            input_size=128,
            target_options={"coreml_layout": layout},
            out_dir=tmp_path / layout,
        )
        result = export(opts)
        assert result.manifest.parity["passed"] is True, result.manifest.parity
        assert result.manifest.extra["coreml_layout"] == layout
        reports[layout] = ane.check(result.artifact)
        assert reports[layout].summary() == result.manifest.extra["ane"]  # the manifest keeps what ane-check reports
    std, new = (reports[k].by_rule() for k in ("standard", "ane"))
    assert std["attention-layout"] == 9 and new["attention-layout"] == 0  # 9 attention layers in XXS
    assert new["rank>5"] == new["rank-5"] == 0
    assert new["last-axis-move"] < std["last-axis-move"] / 1.5
    # (last-axis padding depends on the size: N patches go last, so at 128 px, N = 16 / 4 in the late stages, the ANE
    # layout pads more; at 256 px it halves it — benchmarks/coreml_layouts.py prints both)
    assert (new["fp32-compute"] > 0) == (precision == "fp32")


def test_several_input_sizes_become_enumerated_shapes_checked_at_each_size(tmp_path):
    """--input-size 128,192 on Core ML: one program with EnumeratedShapes (the ANE-friendly flexibility), parity at
    both."""
    from mvit_deploy.pipeline.export import export
    from mvit_deploy.targets import ExportOptions
    from mvit_deploy.targets.coreml_exec import InputShapeError, MILExecutor

    opts = ExportOptions(
        model="mobilevit_xxs",
        target="coreml",
        precision="fp32",
        input_size=128,
        more_sizes=(192,),
        parity_n=8,
        out_dir=tmp_path,
    )
    result = export(opts)
    m = result.manifest
    assert result.artifact.name == "mobilevit_xxs-coreml-fp32-also192-128.mlpackage"
    assert m.input.sizes == [128, 192] and m.parity["passed"] is True and m.parity_sizes["192"]["passed"] is True
    assert m.parity_sizes["192"]["metrics"]["max_rel"] <= 1e-4  # the fp32 bound, at the second size too
    ex = MILExecutor(result.artifact)
    assert ex.program.inputs[0].enumerated == [(1, 3, 128, 128), (1, 3, 192, 192)]
    with pytest.raises(InputShapeError, match="accepts only the enumerated shapes"):
        ex.run({"image": np.zeros((1, 3, 256, 256), np.float32)})
    assert ane.check(result.artifact).by_rule()["range-dim-input"] == 0


def test_several_input_sizes_are_refused_for_a_one_size_target(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "mvit_deploy.faces.cli",
            "export",
            "--model",
            "mobilevit_xxs",
            "--target",
            "onnx",
            "--input-size",
            "128,192",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and "takes one input size" in out.stderr and "--target coreml" in out.stderr
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------------------- compute plan (macOS), recorded


class MLNeuralEngineComputeDevice:  # the class names coremltools' compute plan returns
    pass


class MLCPUComputeDevice:
    pass


def fake_plan(program, off_ane: set[str]):
    """An object with coremltools' MLComputePlan surface: model_structure.program.functions['main'].block.operations,
    get_compute_device_usage_for_mlprogram_operation, get_estimated_cost_for_mlprogram_operation."""
    ops = [
        SimpleNamespace(operator_name=o.type, outputs=[SimpleNamespace(name=n) for n, _ in o.outputs])
        for o in program.operations
    ]
    structure = SimpleNamespace(
        program=SimpleNamespace(functions={"main": SimpleNamespace(block=SimpleNamespace(operations=ops))})
    )

    def usage(op):
        device = MLCPUComputeDevice() if op.outputs[0].name in off_ane else MLNeuralEngineComputeDevice()
        return SimpleNamespace(preferred_compute_device=device, supported_compute_devices=[device])

    return SimpleNamespace(
        model_structure=structure,
        get_compute_device_usage_for_mlprogram_operation=usage,
        get_estimated_cost_for_mlprogram_operation=lambda op: SimpleNamespace(weight=0.5),
    )


def test_recorded_compute_plan_beside_the_rules(tmp_path):
    w = RNG.standard_normal((64, 64, 3, 3)).astype(np.float32)
    path = save(
        tmp_path, lambda x: mb.relu(x=mb.conv(x=x, weight=w, dilations=[2, 2], pad_type="same")), shape=(1, 64, 8, 64)
    )
    program = load_program(path)
    conv = next(o for o in program.operations if o.type == "conv").outputs[0][0]
    relu = next(o for o in program.operations if o.type == "relu").outputs[0][0]
    plan = ane.plan_from_mlcomputeplan(
        fake_plan(program, off_ane={relu})
    )  # Core ML keeps the dilated conv, moves the relu
    assert plan[conv] == {"op": "conv", "device": "ane", "cost": 0.5} and plan[relu]["device"] == "cpu"
    comparison = ane.compare_plan(ane.check(path), program, plan)
    assert comparison["ops"] == 2 and comparison["core_ml_on_ane"] == 1 and comparison["agreement"] == 0.0
    assert {r["predicted"] for r in comparison["disagreements"]} == {"off-ane", "ane"}

    recorded = tmp_path / "plan.json"
    recorded.write_text(json.dumps(plan))
    out = subprocess.run(
        [sys.executable, "-m", "mvit_deploy.faces.cli", "ane-check", str(path), "--plan", str(recorded), "--json"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["compute_plan"]["core_ml_on_ane"] == 1 and data["by_rule"] == {"reported-op": 1}


# ---------------------------------------------------------------------------- CLI


def cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "mvit_deploy.faces.cli", "ane-check", *map(str, args)], capture_output=True, text=True
    )


def test_cli_strict_exits_1_on_a_hard_finding_and_table_names_rules(tmp_path):
    fp32 = save(tmp_path, clean, fp16=False, name="fp32")
    out = cli(fp32)
    assert out.returncode == 0 and "fp32-compute" in out.stdout and "1 hard" in out.stdout
    assert cli(fp32, "--strict").returncode == 1
    assert cli(save(tmp_path, clean, name="fp16"), "--strict").returncode == 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["{tmp}/nothing.mlpackage"], "is not an .mlpackage directory"),
        (["{pkg}", "--compute-plan"], "exists only on macOS"),
        (["{pkg}", "--save-plan", "{tmp}/p.json"], "add --compute-plan"),
        (["{pkg}", "--plan", "{tmp}/bad.json"], "is not a recorded compute plan"),
    ],
)
def test_cli_refusals_are_one_line(tmp_path, args, message):
    if sys.platform == "darwin" and "--compute-plan" in args:
        pytest.skip(reason="a Mac has the compute plan")
    pkg = save(tmp_path, clean, name="ok")
    (tmp_path / "bad.json").write_text('{"a": 1}')
    out = cli(*[a.format(tmp=tmp_path, pkg=pkg) for a in args])
    assert out.returncode == 2, out.stderr
    assert message in out.stderr and "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
