"""A target is one file (and its runner one file on the device side): nothing outside ``mvit_deploy/targets/`` and
``mvit_deploy/device/runtimes/`` names one, and the registry drives the rest."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import tomllib
from helpers import ROOT, run_cli

from mvit_deploy.targets import TARGETS, get_target, options_of, packages

PACKAGE = ROOT / "mvit_deploy"
# The runtimes' and converters' own modules: importing one is knowing a target.
RUNTIME_MODULES = (
    "onnx",
    "onnxruntime",
    "onnxscript",
    "ai_edge_litert",
    "tflite_runtime",
    "litert_torch",
    "ai_edge_quantizer",
    "coremltools",
    "executorch",
)


def _docstrings(tree) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                ids.add(id(first.value))
    return ids


def target_mentions(path: Path) -> list[str]:
    """Every place ``path``'s code names a registered target: strings (not docstrings), identifiers, imports."""
    names = "|".join(re.escape(n) for n in TARGETS)
    word = re.compile(rf"(?<![A-Za-z])({names})(?![a-z])")  # tflite_quantize, "coreml", OnnxRunner's onnx...
    suffix = re.compile("|".join(re.escape(t.suffix) + r"\b" for t in TARGETS.values()))
    tree = ast.parse(path.read_text())
    docs = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        where = f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            if word.search(node.value) or suffix.search(node.value):
                found.append(f"{where} string {node.value[:60]!r}")
        elif isinstance(node, (ast.Name, ast.Attribute, ast.FunctionDef, ast.ClassDef, ast.arg)):
            ident = (
                getattr(node, "id", None)
                or getattr(node, "attr", None)
                or getattr(node, "name", None)
                or getattr(node, "arg", "")
            )
            if word.search(ident.lower()):
                found.append(f"{where} identifier {ident}")
        elif isinstance(node, ast.Import):
            found += [f"{where} import {a.name}" for a in node.names if a.name.split(".")[0] in RUNTIME_MODULES]
        elif (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and (node.module or "").split(".")[0] in RUNTIME_MODULES
        ):
            found.append(f"{where} import {node.module}")
    return found


def test_no_module_outside_targets_names_a_target():
    outside = _outside_targets()  # a target's file, and its runner on the device side, are inside
    assert len(outside) > 20
    found = [m for p in outside for m in target_mentions(p)]
    assert found == [], "\n".join(found)


def test_the_check_finds_what_it_looks_for(tmp_path):
    """The scan above must fail on the code this refactor removed (a test that cannot fail proves nothing)."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        '"""A docstring may say onnx."""\n'
        "import onnxruntime\n"
        "from coremltools import models\n"
        "def f(manifest):\n"
        '    if manifest["target"] == "coreml":\n'
        "        return _tflite_interpreter()\n"
        '    return manifest["artifact"].endswith(".mlpackage")\n'
    )
    kinds = sorted(m.split(" ")[1] for m in target_mentions(bad))
    assert kinds == ["identifier", "import", "import", "string", "string"]


def _outside_targets() -> list[Path]:
    inside = ("targets",), ("device", "runtimes")
    return [
        p for p in sorted(PACKAGE.rglob("*.py")) if not any(p.relative_to(PACKAGE).parts[: len(i)] == i for i in inside)
    ]


def option_reads(path: Path) -> list[str]:
    """Every place ``path`` reads into a target's options: ``….target_options.<field>`` or ``….target_options[...]``,
    ``.get(...)`` on it, or ``getattr`` of it (shared code passes them along, unread)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        inner = getattr(node, "value", None)
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "getattr" and node.args:
            inner, node = node.args[0], node
        elif not isinstance(node, (ast.Attribute, ast.Subscript)):
            continue
        if isinstance(inner, ast.Attribute) and inner.attr == "target_options":
            found.append(f"{path.name}:{node.lineno} reads {ast.unparse(node)[:60]}")
    return found


def test_shared_code_keeps_no_target_option():
    """ExportOptions has no field a target declares, and no module outside targets/ reads a target's options."""
    from dataclasses import fields

    from mvit_deploy.targets import ExportOptions

    target_fields = {o.field for t in TARGETS.values() for o in t.export_options}
    assert target_fields & {f.name for f in fields(ExportOptions)} == set()
    found = [m for p in _outside_targets() for m in option_reads(p)]
    assert found == [], "\n".join(found)
    for target in TARGETS.values():  # each target's options record is its flags, with their defaults
        record = target.Options()
        assert {o.field: o.default for o in target.export_options} == vars(record)


def test_the_option_scan_finds_what_it_looks_for(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "def f(opts):\n"
        "    a = opts.target_options.layout\n"
        '    b = opts.target_options["io"]\n'
        '    c = getattr(opts.target_options, "batch")\n'
        "    return opts.target_options, a, b, c\n"
    )
    assert len(option_reads(bad)) == 3


def family_defaults(path: Path, families) -> list[str]:
    """Parameters and fields whose default names a model family (a family is told, never assumed)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        defaults = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            defaults = [d for d in (*node.args.defaults, *node.args.kw_defaults) if d is not None]
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            defaults = [node.value]
        found += [
            f"{path.name}:{d.lineno} defaults to {d.value!r}"
            for d in defaults
            if isinstance(d, ast.Constant) and d.value in families
        ]
    return found


def test_no_family_is_a_default(tmp_path):
    from mvit_deploy.models.families import FAMILIES

    found = [m for p in sorted(PACKAGE.rglob("*.py")) for m in family_defaults(p, FAMILIES)]
    assert found == [], "\n".join(found)
    bad = tmp_path / "bad.py"
    bad.write_text('def f(x, family: str = "mobilevit"):\n    pass\nclass C:\n    family: str = "mobilevitv2"\n')
    assert len(family_defaults(bad, FAMILIES)) == 2


def test_every_target_declares_what_the_rest_of_the_tool_asks():
    for name, target in TARGETS.items():
        assert target.name == name and target.suffix.startswith(".")
        assert target.default_precision in target.precisions
        for opt in (*target.export_options, *target.bench_options):
            assert opt.flag.startswith("--") and (opt.default is None or opt.default in opt.choices)
    options = {
        id(o): o for t in TARGETS.values() for o in t.export_options
    }.values()  # one Option may serve several targets (onnx, ort: --batch)
    flags, fields = [o.flag for o in options], [o.field for o in options]
    assert len(flags) == len(set(flags)) and len(fields) == len(set(fields)), (
        "two targets declare the same export flag differently"
    )


def test_pyproject_extras_carry_every_targets_packages():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]

    def names(reqs):
        return {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].lower() for r in reqs}

    assert set(packages("device")) <= names(extras["device"])
    assert set(packages("converter")) <= names(extras["export"])


def test_library_and_cli_share_one_set_of_defaults(tmp_path):
    """ExportOptions with no precision gets the target's default, as the CLI does (Core ML: fp16)."""
    from mvit_deploy.targets import ExportOptions

    for name, target in TARGETS.items():
        opts = target.resolve(ExportOptions(model="mobilevit_xxs", target=name, out_dir=tmp_path))
        assert opts.precision == target.default_precision
    w8a8 = get_target("coreml").resolve(
        ExportOptions(model="mobilevit_xxs", target="coreml", out_dir=tmp_path, precision="w8a8")
    )
    assert w8a8.target_options.min_target == "iOS17"


@pytest.mark.parametrize("kind", ["export", "bench"])
def test_help_lists_every_targets_flags(kind):
    result = run_cli(kind, "--help")
    assert result.returncode == 0
    for flag, (opt, _targets) in options_of(kind).items():
        assert flag in result.stdout, flag
        for choice in opt.choices:
            assert choice in result.stdout


def test_a_flag_of_another_target_is_refused_by_name(tmp_path):
    result = run_cli("export", "--target", "onnx", "--io", "int8", "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "error: --io applies to tflite, not onnx" in result.stderr and not (tmp_path / "out").exists()


def test_a_manifest_naming_an_unregistered_target_is_a_one_line_error(tmp_path):
    from mvit_deploy.artifact import CheckpointInfo, InputSpec, Manifest, OutputSpec
    from mvit_deploy.errors import UsageError
    from mvit_deploy.targets import load_runner

    manifest = Manifest(
        "m.plan", "mobilevit_xxs", "tensorrt", "fp32", InputSpec(layout="nchw"), OutputSpec(), CheckpointInfo()
    )
    with pytest.raises(UsageError, match="unknown target 'tensorrt'"):
        load_runner(tmp_path / "m.plan", manifest)


def test_every_target_has_a_runner_on_the_device_side_with_its_bench_options():
    from mvit_deploy.device.runtimes import RUNNERS

    assert set(RUNNERS) == set(TARGETS)
    for name, target in TARGETS.items():
        assert {o.field for o in target.bench_options} <= set(RUNNERS[name].options), name
