"""Will a Core ML program stay on the Neural Engine? A static check of the ML program, on any OS.

Each rule is one entry of :data:`RULES`: what it looks for, how severe a finding is, how sure the
prediction is and where the knowledge comes from. Severity:

- ``hard``      the op (or the whole model) is predicted to leave the Neural Engine, or Core ML rejects it
- ``cost``      it stays, but pays in memory, bandwidth or extra ops
- ``reported``  reported to fall off or run poorly on the ANE, not guaranteed either way

These are predictions from public sources, not the truth: on a Mac, ``ane-check --compute-plan``
asks Core ML itself (``MLComputePlan``) which device each op prefers and prints it beside them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ...errors import UsageError

FP16, FP32 = 10, 11  # MIL data types
ELEMENT_BYTES = {10: 2, 11: 4, 21: 1, 31: 1, 22: 2, 32: 2, 23: 4}
SEVERITIES = ("hard", "cost", "reported")  # in the order the report lists them
INT_TYPES = {21, 22, 23, 24, 31, 32, 33, 34}


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: str
    op: str  # "op #12 'transpose' producing 'x_3'", or the input's name
    detail: str
    fix: str
    bytes_extra: int = 0  # last-axis padding: bytes the ANE's 64-byte rows add to this tensor


@dataclass(frozen=True)
class Rule:
    id: str
    severity: str
    confidence: str  # how sure the prediction is
    reason: str
    source: str
    check: Callable


RULES: dict[str, Rule] = {}


def rule(id: str, severity: str, confidence: str, reason: str, source: str):
    def register(check):
        if id in RULES or severity not in SEVERITIES:
            raise ValueError(f"ANE rule {id}: registered twice, or an unknown severity {severity!r}")
        RULES[id] = Rule(id, severity, confidence, reason, source, check)
        return check

    return register


def _where(o) -> str:
    return f"op #{o.index} '{o.type}' producing '{o.outputs[0][0]}'" if o.outputs else f"op #{o.index} '{o.type}'"


def _compute_ops(program):
    """Ops that run at prediction time (consts and constexpr_* are folded at load)."""
    return [o for o in program.operations if o.type != "const" and not o.type.startswith("constexpr_")]


def _shapes(program) -> dict[str, tuple]:
    out = {i.name: i.shape for i in program.inputs}
    for o in program.operations:
        for (name, _), shape in zip(o.outputs, o.shapes, strict=False):
            if shape is not None:
                out[name] = shape
    return out


def _ref(o, name: str) -> str | None:
    binding = o.inputs.get(name)
    return binding[0][1] if binding and binding[0][0] == "ref" else None


def _consts(program) -> dict:
    return {o.outputs[0][0]: o.attributes.get("val") for o in program.operations if o.type == "const" and o.outputs}


def _value(o, name: str, consts: dict):
    """An op's constant argument: written inline, or (as coremltools writes them) a const op's value."""
    binding = o.inputs.get(name)
    if not binding:
        return None
    kind, v = binding[0]
    return v if kind == "value" else consts.get(v)


# ---------------------------------------------------------------------------- hard


@rule(
    "rank>5",
    "hard",
    "certain: Core ML rejects it",
    "Core ML supports tensors of rank <= 5 only; a rank-6 intermediate (MobileViT's classic unfold) does not load.",
    "coremltools mil/program.py _check_invalid_tensor_rank; issues #1723, #1330, #1796 (a MobileViT attention reshape)",
)
def _rank_over_5(program):
    for o, shape in _ranked(program, lambda rank: rank > 5):
        yield (
            _where(o),
            f"rank-{len(shape)} tensor {tuple(shape)}",
            "merge axes so no tensor exceeds rank 5 (for MobileViT: --coreml-layout ane)",
        )


def _ranked(program, wanted):
    """(op, output shape) for each computed tensor whose rank passes ``wanted``."""
    for o in _compute_ops(program):
        for shape in o.shapes:
            if shape is not None and wanted(len(shape)):
                yield o, shape


@rule(
    "fp32-compute",
    "hard",
    "documented: 'only the ANE is barred ... when a model is typed with float 32'",
    "The GPU and ANE compute in fp16 (W8A8 programs in int8 on A17 Pro / M4); the runtime never lowers an explicit "
    "fp32 type, so fp32-typed ops run on the GPU or CPU.",
    "coremltools guide 'Typed Execution' (docs-guides/source/typed-execution.md)",
)
def _fp32_islands(program):
    """One finding per run of consecutive fp32-typed ops (the input / output casts around an fp16 body are fine)."""
    island: list = []

    def flush():
        if island:
            first, last = island[0], island[-1]
            span = f"{_where(first)} .. op #{last.index}" if len(island) > 1 else _where(first)
            yield (
                span,
                f"{len(island)} op(s) computing in fp32",
                "export with --precision fp16 (the default), or int8 weights on an fp16 body",
            )

    fed = {i.name for i in program.inputs}  # the input, and the image scale / bias coremltools applies to it
    consts = {name for o in program.operations if o.type == "const" for name, _ in o.outputs}
    for o in _compute_ops(program):
        if o.type == "cast" or not o.outputs:
            continue
        refs = [v for bindings in o.inputs.values() for kind, v in bindings if kind == "ref"]
        if (
            o.type in ("mul", "add", "sub")
            and any(r in fed for r in refs)
            and all(r in fed or r in consts for r in refs)
        ):
            fed.update(name for name, _ in o.outputs)  # image preprocessing, before the program's first cast
            continue
        if any(dtype == FP32 for _, dtype in o.outputs):
            island.append(o)
        elif any(dtype == FP16 for _, dtype in o.outputs):
            yield from flush()
            island = []
    yield from flush()


@rule(
    "range-dim-input",
    "hard",
    "documented by an Apple engineer; a reshape-frequency hint (iOS 17.4+) may relax it",
    "With range flexibility the Neural Engine runs only the input's default shape; other shapes run on the GPU or "
    "CPU. Each enumerated shape can run on the ANE.",
    "Apple Developer Forums thread 724930; coremltools guide 'Flexible Input Shapes'; coremltools issue #2370",
)
def _range_dims(program):
    for i in program.inputs:
        if i.ranges and any(lo != hi for lo, hi in i.ranges):
            spans = [f"[{lo}, {'inf' if hi == -1 else hi}]" for lo, hi in i.ranges]
            yield (
                f"input '{i.name}'",
                f"RangeDim shape {' x '.join(spans)}",
                "declare the sizes you use as ct.EnumeratedShapes (or export one artifact per --input-size)",
            )


# ---------------------------------------------------------------------------- cost


@rule(
    "rank-5",
    "cost",
    "inferred: no public measurement; Apple names 4-D the ANE's most conducive format",
    "Rank 5 loads, but the ANE's preferred format is 4-D channels-first; a rank-5 tensor needs a layout conversion.",
    "Apple, 'Deploying Transformers on the Apple Neural Engine' (2022), principle 1",
)
def _rank_5(program):
    for o, shape in _ranked(program, lambda rank: rank == 5):
        yield (
            _where(o),
            f"rank-5 tensor {tuple(shape)}",
            "keep tensors at rank 4, (B, C, 1, S) as Apple's ANE transformers do",
        )


@rule(
    "last-axis-padding",
    "cost",
    "documented layout; the bytes are estimated from the program's static shapes",
    "The last axis of an ANE buffer is not packed: it is contiguous and aligned to 64 bytes, so a last axis under 32 "
    "fp16 values (64 B / 2 B) is padded.",
    "Apple, 'Deploying Transformers on the Apple Neural Engine' (2022), principle 1 'Picking the Right Data Format'",
)
def _last_axis_padding(program):
    for o in _compute_ops(program):
        for (_name, dtype), shape in zip(o.outputs, o.shapes, strict=False):
            if not shape or dtype not in ELEMENT_BYTES or any(d is None for d in shape):
                continue
            elem = 2 if dtype == FP32 else ELEMENT_BYTES[dtype]  # on the ANE an fp32 value would be fp16
            row = shape[-1] * elem
            if row < 64:
                extra = math.prod(shape[:-1]) * (64 - row)
                yield (
                    _where(o),
                    f"last axis {shape[-1]} of {tuple(shape)}: {extra} padding bytes ({64 // elem} values per row)",
                    "put the long axis last ((B, C, 1, S): the sequence on the last axis)",
                    extra,
                )


@rule(
    "last-axis-move",
    "cost",
    "documented: reshapes and transposes are likely to trigger memory copies",
    "A transpose that moves the last axis, or a reshape that changes its length, re-lays out the 64-byte rows: a "
    "copy, where a CPU would only relabel strides.",
    "Apple, 'Deploying Transformers on the Apple Neural Engine' (2022), principle 3",
)
def _last_axis_moves(program):
    shapes, consts = _shapes(program), _consts(program)
    for o in _compute_ops(program):
        if o.type == "transpose":
            perm = _value(o, "perm", consts)
            if perm is not None and len(perm) and int(list(perm)[-1]) != len(perm) - 1:
                yield (
                    _where(o),
                    f"perm {[int(p) for p in perm]} moves the last axis",
                    "lay the model out so the last axis stays put (--coreml-layout ane)",
                )
        elif o.type == "reshape":
            src, out = shapes.get(_ref(o, "x")), o.shapes[0] if o.shapes else None
            if src and out and src[-1] is not None and out[-1] is not None and src[-1] != out[-1]:
                yield (
                    _where(o),
                    f"{tuple(src)} -> {tuple(out)} changes the last axis",
                    "reshape only the leading axes (--coreml-layout ane)",
                )


@rule(
    "attention-layout",
    "cost",
    "documented: Apple's reference layout",
    "Multi-head attention as matmul -> softmax(last axis) -> matmul on (B, heads, S, d) tensors; Apple's ANE "
    "reference keeps (B, C, 1, S), splits heads with einsum and runs softmax over the channel axis.",
    "apple/ml-ane-transformers: ane_transformers/reference/multihead_attention.py (einsum 'bchq,bkhc->bkhq', "
    "softmax(dim=1))",
)
def _attention_layout(program):
    producers = {name: o for o in program.operations for name, _ in o.outputs}
    shapes, consts = _shapes(program), _consts(program)
    for o in _compute_ops(program):
        if o.type != "softmax":
            continue
        x = _ref(o, "x")
        shape = shapes.get(x)
        axis = _value(o, "axis", consts)
        axis = -1 if axis is None else int(axis)
        if shape is None or len(shape) < 3 or axis % len(shape) != len(shape) - 1:
            continue
        src = producers.get(x)
        while src is not None and src.type in ("mul", "add", "real_div", "cast"):  # scale / mask between
            src = producers.get(_ref(src, "x"))
        if src is not None and src.type in ("matmul", "einsum"):
            yield (
                _where(o),
                f"softmax over the last axis of {tuple(shape)} after a {src.type}",
                "export with --coreml-layout ane (per-head einsum, softmax on the channel axis)",
            )


# ---------------------------------------------------------------------------- reported

REPORTED_OPS = {
    "gather": "gather",
    "gather_nd": "gather",
    "gather_along_axis": "gather",
    "lstm": "recurrent",
    "gru": "recurrent",
    "rnn": "recurrent",
}


@rule(
    "reported-op",
    "reported",
    "community list, 'incomplete and possibly wrong' by its own account (NeuralNetwork era, 2020)",
    "Layers reported to run off the ANE: gather, RNN layers (LSTM, GRU), dilated convolutions, pooling with a kernel "
    "above 13 or a stride above 2, upsampling by more than 2.",
    "hollance/neural-engine, docs/unsupported-layers.md",
)
def _reported_ops(program):
    consts = _consts(program)
    for o in _compute_ops(program):
        if o.type in REPORTED_OPS:
            if o.type.startswith("gather") and all(dtype in INT_TYPES for _, dtype in o.outputs):
                continue  # shape arithmetic of a flexible-shape program (a few integers), not a data gather
            yield (
                _where(o),
                f"{o.type} ({REPORTED_OPS[o.type]})",
                "replace it with dense ops where you can; confirm on a Mac with --compute-plan",
            )
        elif o.type in ("conv", "conv_transpose"):
            dil = _value(o, "dilations", consts)
            if dil is not None and any(int(d) > 1 for d in list(dil)):
                yield (
                    _where(o),
                    f"dilated {o.type} (dilations {[int(d) for d in dil]})",
                    "an undilated kernel, or space_to_batch around it",
                )
        elif o.type in ("max_pool", "avg_pool", "l2_pool"):
            kernel, strides = _value(o, "kernel_sizes", consts), _value(o, "strides", consts)
            big = kernel is not None and max(int(k) for k in list(kernel)) > 13
            if big or (strides is not None and max(int(t) for t in list(strides)) > 2):
                yield (
                    _where(o),
                    f"{o.type} kernel {[int(k) for k in kernel]} strides "
                    f"{None if strides is None else [int(t) for t in strides]}",
                    "a kernel <= 13 and stride <= 2 (chain smaller pools)",
                )
        elif o.type in ("upsample_nearest_neighbor", "upsample_bilinear"):
            factors = [_value(o, k, consts) for k in ("scale_factor_height", "scale_factor_width")]
            if any(f is not None and float(f) > 2 for f in factors):
                yield (
                    _where(o),
                    f"{o.type} by {[None if f is None else float(f) for f in factors]}",
                    "upsample in steps of 2",
                )


# ---------------------------------------------------------------------------- report


@dataclass
class AneReport:
    artifact: str
    ops: int  # compute ops (consts excluded)
    findings: list[Finding] = field(default_factory=list)

    def count(self, severity: str) -> int:
        return sum(f.severity == severity for f in self.findings)

    @property
    def hard(self) -> int:
        return self.count("hard")

    def by_rule(self) -> dict[str, int]:
        out = {r: 0 for r in RULES}
        for f in self.findings:
            out[f.rule] += 1
        return out

    def summary(self) -> dict:
        """What the export manifest stores."""
        return {
            "hard": self.hard,
            "cost": self.count("cost"),
            "reported": self.count("reported"),
            "ops": self.ops,
            "by_rule": {k: v for k, v in self.by_rule().items() if v},
            "last_axis_padding_bytes": sum(f.bytes_extra for f in self.findings),
        }

    def to_dict(self) -> dict:
        rules = [{k: v for k, v in asdict(r).items() if k != "check"} for r in RULES.values()]
        return {
            "artifact": self.artifact,
            **self.summary(),
            "rules": rules,
            "findings": [asdict(f) for f in self.findings],
        }


def check_program(program, artifact: str = "") -> AneReport:
    report = AneReport(artifact, len(_compute_ops(program)))
    for r in RULES.values():
        for item in r.check(program):
            where, detail, fix, *extra = item
            report.findings.append(Finding(r.id, r.severity, where, detail, fix, int(extra[0]) if extra else 0))
    return report


def check(artifact: str | Path) -> AneReport:
    """Check an ``.mlpackage`` (the ``main`` function of its ML program)."""
    from .program import load_program

    path = Path(artifact)
    if path.suffix != ".mlpackage" or not path.is_dir():
        raise UsageError(
            f"{artifact} is not an .mlpackage directory", "pass what `mvit-deploy export --target coreml` wrote"
        )
    return check_program(load_program(path), str(path))


# ---------------------------------------------------------------------------- the compute plan (macOS)


PLAN_MAX_BYTES = 64 << 20  # --save-plan writes ~100 bytes an op; a program of 10,000 ops is 1 MB


def read_plan(path: str | Path) -> dict[str, dict]:
    """A compute plan ``ane-check --compute-plan --save-plan`` recorded (op -> {device, cost, ...}), checked entry
    by entry: device one of ane / gpu / cpu / null, cost a finite weight or null."""
    import math

    from ...device.files import load_json

    fix = "pass the JSON `ane-check --compute-plan --save-plan` wrote"
    plan = load_json(path, "compute plan", fix, PLAN_MAX_BYTES)
    if not isinstance(plan, dict) or not all(isinstance(v, dict) and "device" in v for v in plan.values()):
        raise UsageError(f"{path} is not a recorded compute plan", fix)
    for name, entry in plan.items():
        cost = entry.get("cost")
        if entry["device"] not in (*_DEVICES.values(), None):
            raise UsageError(
                f"{path} is not a recorded compute plan: {name!r:.80} runs on {entry['device']!r:.40}", fix
            )
        if cost is not None and not (
            isinstance(cost, (int, float)) and not isinstance(cost, bool) and math.isfinite(cost) and cost >= 0
        ):
            raise UsageError(f"{path} is not a recorded compute plan: the cost of {name!r:.80} is {cost!r:.40}", fix)
    return plan


def check_with_plan(
    artifact: str | Path,
    plan_file: str | Path | None = None,
    ask_core_ml: bool = False,
    compute_units: str = "cpu_and_ne",
    save_plan: str | Path | None = None,
) -> tuple[AneReport, dict | None]:
    """The static check, and its comparison with Core ML's own plan: asked of Core ML (macOS 14.4+,
    ``ask_core_ml``; ``save_plan`` records it) or read from a recorded ``plan_file``. Bad combinations are
    refused before the program loads."""
    from ..._deps import IS_MACOS
    from ...errors import NotOnThisDevice

    if ask_core_ml and not IS_MACOS:
        raise NotOnThisDevice(
            "Core ML's compute plan exists only on macOS 14.4+",
            "run ane-check --compute-plan on a Mac, or pass a recorded plan with --plan FILE",
        )
    if save_plan and not ask_core_ml:
        raise UsageError("--save-plan records the plan --compute-plan asks for", "add --compute-plan (macOS 14.4+)")
    if ask_core_ml and plan_file:
        raise UsageError("--compute-plan and --plan both give a plan", "pass one of them")
    plan = read_plan(plan_file) if plan_file else None
    report = check(artifact)
    if ask_core_ml:
        plan = compute_plan(artifact, compute_units)
        if save_plan:
            import json

            from ...artifact import staged

            with staged(Path(save_plan)) as tmp:
                tmp.write_text(json.dumps(plan, indent=1))
    if plan is None:
        return report, None
    from .program import load_program

    comparison = compare_plan(report, load_program(artifact), plan)
    if plan_file and not comparison["ops"]:  # else: exit 0 with agreement null, as if Core ML had said nothing
        raise UsageError(
            f"compute plan {plan_file} names no op of {artifact}: it was recorded for another model",
            f"record this package's plan on a Mac: `mvit-deploy ane-check {artifact} --compute-plan --save-plan FILE`",
        )
    return report, comparison


def compute_plan(artifact: str | Path, compute_units: str = "cpu_and_ne") -> dict[str, dict]:
    """Core ML's own placement, per op output name: {"device": "ane" | "gpu" | "cpu" | None, "cost": weight | None}.

    Needs macOS 14.4+ (coremltools' ``MLComputePlan``). The result can be saved as JSON and read
    back with :func:`compare_plan` anywhere.
    """
    from ..._deps import IS_MACOS
    from ...errors import NotOnThisDevice

    if not IS_MACOS:
        raise NotOnThisDevice(
            "Core ML's compute plan exists only on macOS 14.4+",
            "run ane-check --compute-plan on a Mac, or pass a recorded plan with --plan FILE",
        )
    import coremltools as ct
    from coremltools.models.compute_plan import MLComputePlan

    units = {
        "all": ct.ComputeUnit.ALL,
        "cpu_and_ne": ct.ComputeUnit.CPU_AND_NE,
        "cpu_only": ct.ComputeUnit.CPU_ONLY,
        "cpu_and_gpu": ct.ComputeUnit.CPU_AND_GPU,
    }
    compiled = ct.models.MLModel(str(artifact), compute_units=units[compute_units]).get_compiled_model_path()
    return plan_from_mlcomputeplan(MLComputePlan.load_from_path(compiled, compute_units=units[compute_units]))


_DEVICES = {"MLNeuralEngineComputeDevice": "ane", "MLGPUComputeDevice": "gpu", "MLCPUComputeDevice": "cpu"}


def plan_from_mlcomputeplan(plan) -> dict[str, dict]:
    """Walk coremltools' MLComputePlan (model_structure.program.functions['main'].block.operations)."""
    program = plan.model_structure.program
    if program is None:
        raise UsageError("the compute plan is not an ML program's", "export with --target coreml (mlprogram)")
    out = {}
    for op in program.functions["main"].block.operations:
        if op.operator_name == "const" or not op.outputs:
            continue
        usage = plan.get_compute_device_usage_for_mlprogram_operation(op)
        cost = plan.get_estimated_cost_for_mlprogram_operation(op)
        device = _DEVICES.get(type(usage.preferred_compute_device).__name__) if usage is not None else None
        out[op.outputs[0].name] = {
            "op": op.operator_name,
            "device": device,
            "cost": None if cost is None else float(cost.weight),
        }
    return out


def compare_plan(report: AneReport, program, plan: dict[str, dict]) -> dict:
    """Static prediction beside Core ML's placement: per op, and how often they agree.

    Predicted off the ANE: ops named by a hard or reported finding. Everything else is predicted on it.
    """
    flagged = {}
    for f in report.findings:
        if f.severity in ("hard", "reported") and f.op.startswith("op #"):
            flagged.setdefault(f.op.split("producing '")[-1].rstrip("'").split("'")[0], f.rule)
    rows = []
    for o in _compute_ops(program):
        name = o.outputs[0][0] if o.outputs else None
        if name is None or name not in plan or o.type == "cast":
            continue
        predicted = "off-ane" if name in flagged else "ane"
        actual = plan[name].get("device")
        rows.append(
            {
                "op": _where(o),
                "predicted": predicted,
                "rule": flagged.get(name),
                "core_ml": actual,
                "cost": plan[name].get("cost"),
                "agree": None if actual is None else (predicted == "ane") == (actual == "ane"),
            }
        )
    known = [r for r in rows if r["agree"] is not None]
    on_ane = [r for r in known if r["core_ml"] == "ane"]
    return {
        "ops": len(rows),
        "core_ml_on_ane": len(on_ane),
        "agreement": (sum(r["agree"] for r in known) / len(known)) if known else None,
        "disagreements": [r for r in known if not r["agree"]],
        "rows": rows,
    }
