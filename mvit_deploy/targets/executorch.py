"""ExecuTorch: torch.export -> edge -> .pte, lowered to the XNNPACK delegate (CPU) or the Core ML delegate.

- fp32 and int8 on XNNPACK. int8 is PT2E with ExecuTorch's XNNPACK quantizer (per-channel
  symmetric int8 weights, per-tensor activations), calibrated on our calibration crops; the
  layers of :data:`mvit_deploy.targets.quantize.FLOAT_MODULES` stay float, as in our other int8
  recipes (a node filter: ``set_module_name(name, None)`` is refused by executorch 1.5.1).
- fp32 and fp16 on Core ML (``--delegate coreml``): the delegate's payload is an ``.mlpackage``
  packed into the .pte. ExecuTorch's Linux runtime has no Core ML backend, so off macOS the
  runner unpacks that ``.mlpackage`` (pure Python, the payload's documented layout) and runs it
  in our Core ML reference executor; a macOS runtime built with the Core ML backend runs the
  .pte itself.
- The manifest records the share of the graph each delegate took (``delegation``).

The Python runtime (``executorch.runtime``) imports torch; on a board the smallest runtime is
ExecuTorch's C++ ``executor_runner`` built with XNNPACK (a few MB, no Python), which ``bench``
runs over adb.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np

from .._deps import IS_MACOS
from ..device.runtimes import Runner
from ..device.runtimes.executorch import BACKEND_IDS, check_pte, registered_backends
from ..device.runtimes.executorch import ExecuTorchRunner as DeviceExecuTorchRunner
from ..device.runtimes.executorch import quiet_native as _quiet_native
from ..errors import NotOnThisDevice, UsageError
from . import register_target
from .base import AdbBenchmark, ArtifactContents, Converted, ExportOptions, Option, Target, contents_of, is_weight
from .quantize import float_modules

DELEGATES = ("xnnpack", "coreml")


def unpack_coreml_payload(payload: bytes, dest: Path) -> Path:
    """The Core ML delegate's payload -> its ``model.mlpackage`` under ``dest`` (torch- and executorch-free).

    Layout (executorch backends/apple/coreml/runtime/inmemoryfs): the files' bytes at their
    offsets, then the directory tree as JSON written byte-reversed at the very end:
    ``{"nodes": [{"name", "kind": 0 file | 1 directory, "dataRegion": {"offset", "size"},
    "children": {name: index}}]}``.
    """
    text = payload[::-1]
    try:
        _, end = json.JSONDecoder().raw_decode(text.decode("latin-1"))
        nodes = json.loads(text[:end].decode("utf-8"))["nodes"]
    except (ValueError, KeyError):
        raise UsageError(
            "the .pte's Core ML payload is not the delegate's packed directory", "re-export it with mvit-deploy"
        ) from None
    children = {i for n in nodes for i in n.get("children", {}).values()}
    root = next(i for i in range(len(nodes)) if i not in children)

    def write(i: int, path: Path) -> None:
        node = nodes[i]
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", node["name"]) or node["name"] in (".", ".."):
            raise UsageError(
                f"the .pte's Core ML payload names a file {node['name']!r}", "re-export it with mvit-deploy"
            )
        if node["kind"] == 1:
            path.mkdir(parents=True, exist_ok=True)
            for j in node.get("children", {}).values():
                write(j, path / nodes[j]["name"])
        else:
            region = node["dataRegion"]
            path.write_bytes(payload[region["offset"] : region["offset"] + region["size"]])

    write(root, Path(dest) / nodes[root]["name"])
    found = sorted(Path(dest).rglob("*.mlpackage"))
    if not found:
        raise UsageError("the .pte's Core ML payload holds no .mlpackage", "re-export it with mvit-deploy")
    return found[0]


def coreml_payload(pte: Path) -> bytes:
    """The first Core ML delegate payload inside a .pte (executorch's own flatbuffer reader)."""
    from executorch.exir._serialize._program import _extract_delegate_payload

    return _extract_delegate_payload(Path(pte).read_bytes(), BACKEND_IDS["coreml"], 0)


class ExecuTorchRunner(DeviceExecuTorchRunner):
    """The ExecuTorch Python runtime (the device side's runner); Core ML-delegated programs where the runtime
    has no Core ML backend (off macOS) run in the reference executor, from the .pte's own Core ML payload."""

    def __init__(self, path, manifest, threads=None):
        self._coreml = None
        if (manifest.extra.get("delegation") or {}).get("delegate") == "coreml" and BACKEND_IDS[
            "coreml"
        ] not in registered_backends():
            import tempfile

            from .coreml import CoreMLRunner

            Runner.__init__(self, path, manifest, threads)
            check_pte(self.path)  # the runtime's own load (which checks it) is skipped on this path
            self._tmp = tempfile.TemporaryDirectory(prefix="mvit-deploy-pte-")
            package = unpack_coreml_payload(coreml_payload(self.path), Path(self._tmp.name))
            names = json.loads((package.parent / "metadata.json").read_text())  # the program's own input / output names
            inner = replace(
                manifest,
                input=replace(manifest.input, type="tensor", name=names["inputNames"][0]),
                output=replace(manifest.output, name=names["outputNames"][0]),
            )
            self._coreml = CoreMLRunner(package, inner, threads, backend="executor")
            self.runtime = "executorch-coreml-payload/coreml-reference-executor"
            return
        super().__init__(path, manifest, threads)

    def __call__(self, batch):
        if self._coreml is not None:
            return self._coreml(batch)
        return super().__call__(batch)


# executor_runner (examples/portable/executor_runner/executor_runner.cpp, v1.3+) logs through ET_LOG:
#   "Model loaded in %f ms."   "Iteration %u of %u: %f ms"   "Model executed successfully %u time(s) in %f ms."
# (the last is the SUM over the runs). With the posix PAL these go to stderr, prefixed
# "I hh:mm:ss.us executorch:executor_runner.cpp:<line>] "; Android's PAL sends them to logcat instead.
_ITERATION = re.compile(r"Iteration (\d+) of (\d+): ([\d.]+) ms")
_TOTAL = re.compile(r"Model executed successfully (\d+) time\(s\) in ([\d.]+) ms")
_LOADED = re.compile(r"Model loaded in ([\d.]+) ms")


def parse_executor_runner_output(text: str) -> dict:
    """executor_runner's log -> latency (ms) from its per-iteration lines (else the total / N), load (ms)."""
    total = _TOTAL.findall(text)
    if not total:
        raise UsageError(
            "executor_runner printed no timing line",
            "build it with the posix PAL (-DEXECUTORCH_PAL_DEFAULT=posix) so its log reaches the shell, or run it by "
            "hand to see its error",
        )
    count, total_ms = int(total[-1][0]), float(total[-1][1])
    times = np.array([float(ms) for _, n, ms in _ITERATION.findall(text) if int(n) == count][-count:])
    if len(times) == count and count > 0:
        latency = {
            "min": float(times.min()),
            "p50": float(np.percentile(times, 50)),
            "p90": float(np.percentile(times, 90)),
            "p99": float(np.percentile(times, 99)),
            "mean": float(times.mean()),
            "std": float(times.std(ddof=1)) if count > 1 else 0.0,
        }
    else:  # builds before v1.3 print only the total
        latency = {"min": None, "p50": None, "p90": None, "p99": None, "mean": total_ms / count, "std": None}
    loaded = _LOADED.search(text)
    return {
        "runs": count,
        "latency_ms": latency,
        "load_ms": float(loaded.group(1)) if loaded else None,
        "memory_overall_mb": None,
    }


def executor_runner_command(remote_model: str, remote_binary: str, threads: int, warmup: int, iters: int) -> list[str]:
    """executor_runner has no warm-up flag: its inputs are all ones and every iteration is timed."""
    return [
        remote_binary,
        f"--model_path={remote_model}",
        f"--num_executions={iters}",
        f"--cpu_threads={threads}",
        "--print_output=none",
    ]


@register_target
class ExecuTorchTarget(Target):
    name = "executorch"
    suffix = ".pte"
    precisions = ("fp32", "int8", "fp16")
    precision_notes = {"int8": "XNNPACK", "fp16": "Core ML delegate"}
    converter_packages = ("executorch", "torchao")
    device_packages = ()  # the Python runtime needs torch: boards run the C++ executor_runner (bench --device adb)
    runtime_packages = ("executorch",)
    noisy_loggers = ("executorch",)
    export_options = (
        Option(
            "--delegate",
            "delegate",
            DELEGATES,
            "xnnpack",
            "backend the graph is lowered to: xnnpack (CPU; fp32, int8) or coreml (Apple; fp32, fp16).",
        ),
    )
    adb = AdbBenchmark(
        binary="executor_runner",
        where="ExecuTorch's executor_runner built for android_aarch64 with XNNPACK",
        runtime="executorch-executor_runner-xnnpack",
        command=executor_runner_command,
        parse=parse_executor_runner_output,
    )

    def resolve(self, opts: ExportOptions) -> ExportOptions:
        opts = super().resolve(opts)
        delegate = opts.target_options.delegate
        allowed = {"xnnpack": ("fp32", "int8"), "coreml": ("fp32", "fp16")}[delegate]
        if opts.precision not in allowed:
            other = next(
                d for d in DELEGATES if opts.precision in {"xnnpack": ("fp32", "int8"), "coreml": ("fp32", "fp16")}[d]
            )
            raise UsageError(
                f"the {delegate} delegate does not take precision {opts.precision}",
                f"use --delegate {other}, or --precision {' / '.join(allowed)}",
            )
        return opts

    def stem_tags(self, opts):
        delegate = opts.target_options.delegate
        return [delegate] if delegate != "xnnpack" else []

    def runner(self, path, manifest, threads=None):
        return ExecuTorchRunner(path, manifest, threads)

    def bench_runner(self, path, manifest, threads, **_):
        if (manifest.extra.get("delegation") or {}).get("delegate") == "coreml" and not IS_MACOS:
            raise NotOnThisDevice(
                "a Core ML-delegated .pte runs only on Apple devices", "bench it on a Mac, or export --delegate xnnpack"
            )
        return self.runner(path, manifest, threads)

    def convert(self, model, example, opts: ExportOptions, dest: Path, calibration=None) -> Converted:
        import torch

        with _quiet_native():
            program = torch.export.export(model, (example,))
            if opts.precision == "int8":
                program = _quantize(
                    model, example, torch.from_numpy(np.ascontiguousarray(calibration)), float_modules(opts.model)
                )
            edge, delegation = _lower(program, opts)
            dest.write_bytes(edge.to_executorch().buffer)
        return Converted(input_name="x", output_name="output", extra={"delegation": delegation})

    def check(self, path: Path) -> None:
        data = path.read_bytes()
        if len(data) < 8 or data[4:8] != b"ET12":  # the flatbuffer file identifier of a .pte
            raise UsageError(f"{path.name} is not an ExecuTorch program", "re-export it")

    def artifact_contents(self, path: Path) -> ArtifactContents:
        """XNNPACK's delegated graphs (each its own flatbuffer, turned to JSON by ExecuTorch's flatc and XNNPACK's
        schema) and the program's own constants: 8-bit values make int8. A Core ML-delegated program is not read
        (None: its payload is a compiled Core ML model)."""
        return xnnpack_contents(path)


def _quantize(model, example, calibration, prefixes: tuple[str, ...]):
    """PT2E int8 for XNNPACK: the family's float modules (``prefixes``) stay float, ranges from our calibration
    crops."""
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from .quantize import in_float_modules, module_path

    def quantized(node) -> bool:
        stack = node.meta.get("nn_module_stack") or {}
        return not any(in_float_modules(module_path(path), prefixes) for path, _ in stack.values())

    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    quantizer.set_filter_function(quantized)
    prepared = prepare_pt2e(torch.export.export(model, (example,)).module(), quantizer)
    with torch.no_grad():
        for i in range(len(calibration)):
            prepared(calibration[i : i + 1])
    return torch.export.export(convert_pt2e(prepared), (example,))


def _lower(program, opts: ExportOptions):
    """Lower to the chosen delegate; the delegation record is read before to_executorch rewrites the graph."""
    from executorch.devtools.backend_debug import get_delegation_info
    from executorch.exir import to_edge_transform_and_lower

    if opts.target_options.delegate == "coreml":
        import coremltools as ct
        from executorch.backends.apple.coreml.compiler import CoreMLBackend
        from executorch.backends.apple.coreml.partition import CoreMLPartitioner

        specs = CoreMLBackend.generate_compile_specs(
            compute_precision=ct.precision.FLOAT16 if opts.precision == "fp16" else ct.precision.FLOAT32,
            minimum_deployment_target=ct.target.iOS17,
        )
        partitioner = CoreMLPartitioner(compile_specs=specs)
    else:
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

        partitioner = XnnpackPartitioner()
    edge = to_edge_transform_and_lower(program, partitioner=[partitioner])
    info = get_delegation_info(edge.exported_program().graph_module)
    total = info.num_delegated_nodes + info.num_non_delegated_nodes
    delegation = {
        "delegate": opts.target_options.delegate,
        "backend": BACKEND_IDS[opts.target_options.delegate],
        "subgraphs": info.num_delegated_subgraphs,
        "nodes_delegated": info.num_delegated_nodes,
        "nodes_total": total,
        "share": round(info.num_delegated_nodes / max(1, total), 4),
    }
    return edge, delegation


# XNNPACK value types (its schema.fbs XNNDatatype) and ExecuTorch scalar types (ScalarType) of weights
XNN_TYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16", "quint8": "uint8"}
SCALAR_TYPES = {0: "uint8", 1: "int8", 5: "float16", 6: "float32", 15: "bfloat16"}


def xnnpack_contents(path: Path) -> ArtifactContents:
    import math
    import struct
    import subprocess
    import tempfile
    from collections import Counter

    from executorch.backends.xnnpack.serialization import xnnpack_graph_serialize
    from executorch.exir._serialize._flatbuffer import _get_flatc_path  # private, and the only reader there is
    from executorch.exir._serialize._program import deserialize_pte_binary

    program = deserialize_pte_binary(path.read_bytes()).program
    plan = program.execution_plan[0]
    if any(d.id != BACKEND_IDS["xnnpack"] for d in plan.delegates):
        return ArtifactContents()
    weights = Counter()
    ops = Counter(o.name for o in plan.operators if "quantize" in o.name)
    for value in plan.values:  # constants the program runs itself (outside a delegate)
        t = value.val
        if type(t).__name__ == "Tensor" and t.data_buffer_idx and is_weight(t.sizes):
            weights[SCALAR_TYPES.get(int(t.scalar_type), "other")] += math.prod(t.sizes)
    schema = Path(xnnpack_graph_serialize.__file__).with_name("schema.fbs")
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for i, d in enumerate(plan.delegates):
            blob = program.backend_delegate_data[d.processed.index].data
            if blob[4:8] == b"XH00":  # XNNHeader: the flatbuffer's offset and size, then the constant data
                start, size = struct.unpack_from("<II", blob, 10)
                blob = blob[start : start + size]
            files.append(Path(tmp) / f"graph{i}.bin")
            files[-1].write_bytes(blob)
        flatc = [_get_flatc_path(), "--json", "--strict-json", "--raw-binary", "-o", tmp, str(schema), "--"]
        subprocess.run([*flatc, *map(str, files)], check=True, capture_output=True, timeout=120)
        for f in files:
            for value in json.loads(f.with_suffix(".json").read_text())["xvalues"]:
                t = value["xvalue_union"].get("tensor_value", value["xvalue_union"])  # quantized or plain
                if t.get("constant_buffer_idx") and is_weight(t.get("dims", ())):
                    kind = t["datatype"].removeprefix("xnn_datatype_")
                    weights[XNN_TYPES.get(kind, "int8" if "int8" in kind else kind)] += math.prod(t["dims"])
    return contents_of(weights, ops)
