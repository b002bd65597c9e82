"""One typed manifest (mvit_deploy/device/manifest.py): read and written in one place, versioned, its types checked.

- ``to_dict(from_dict(d)) == d`` for what export writes, and the file holds exactly ``ExportResult.manifest.to_dict()``;
- a manifest of the previous schema id (/1, no ``family``) still reads, its family then the model registry's;
- a wrong type is refused by ``read_manifest`` in one line naming the key (exit 2 from the CLI);
- no module of the package outside the manifest module subscripts a manifest (the scan, and a sample it must catch).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from helpers import ROOT, copy_artifact, run_cli

from mvit_deploy.artifact import MANIFEST_SCHEMA, Manifest, manifest_path, read_manifest
from mvit_deploy.errors import UsageError

PACKAGE = ROOT / "mvit_deploy"
MANIFEST_MODULE = PACKAGE / "device" / "manifest.py"
SUBSCRIPT = re.compile(r"\bmanifest(?:\[|\.get\()")


def _written(artifact: Path) -> dict:
    return json.loads(manifest_path(artifact).read_text())


def test_a_manifest_round_trips_exactly(fashion_artifact):
    data = _written(fashion_artifact("onnx"))
    assert data["schema"] == MANIFEST_SCHEMA == "mvit-deploy/artifact/2"
    manifest = Manifest.from_dict(data, "x.json")
    assert manifest.to_dict() == data and list(manifest.to_dict()) == list(data)  # the keys in the order export wrote
    assert manifest.input.size == 64 and manifest.output.classes == 10 and manifest.family == "mobilevit"
    assert manifest.checkpoint.path is None and "path" in manifest.to_dict()["checkpoint"]  # a null stays written
    # what a parity run and a target add (top-level extras, an output extra) round-trip too
    more = {
        **data,
        "delegation": {"delegate": "xnnpack", "share": 1.0},
        "parity": {"passed": True, "metrics": {"psnr_db": 80.0}},
        "output": {**data["output"], "labels_embedded": True},
    }
    again = Manifest.from_dict(more, "x.json")
    assert again.to_dict() == more and again.extra["delegation"]["delegate"] == "xnnpack"
    assert again.output.extra == {"labels_embedded": True} and again.parity["passed"] is True


def test_a_schema_1_manifest_without_family_still_reads(fashion_artifact, tmp_path):
    """/1 is the layout written before the typed manifest: read it, and let the host fill the family."""
    from mvit_deploy.pipeline.parity import manifest_family

    art = copy_artifact(fashion_artifact("onnx"), tmp_path)
    old = {k: v for k, v in _written(art).items() if k != "family"}
    old["schema"] = "mvit-deploy/artifact/1"
    manifest_path(art).write_text(json.dumps(old, indent=2))
    manifest = read_manifest(art)
    assert manifest.schema == "mvit-deploy/artifact/1" and manifest.family is None
    assert manifest_family(manifest) == "mobilevit"  # from the model registry
    assert manifest.to_dict() == old


@pytest.mark.parametrize(
    "change, key",
    [
        (lambda d: d["input"].update(size="big"), "input.size"),
        (lambda d: d["input"].update(shape="x"), "input.shape"),
        (lambda d: d.update(sha256=5), "sha256"),
        (lambda d: d["output"].update(classes=[10]), "output.classes"),
        (lambda d: d.update(checkpoint="fixture"), "checkpoint"),
        (lambda d: d.update(parity=[True]), "parity"),
    ],
)
def test_a_wrong_type_is_refused_naming_the_key(fashion_artifact, tmp_path, change, key):
    art = copy_artifact(fashion_artifact("onnx"), tmp_path)
    data = _written(art)
    change(data)
    manifest_path(art).write_text(json.dumps(data))
    with pytest.raises(UsageError) as e:
        read_manifest(art)
    line = e.value.one_line()
    assert f"{manifest_path(art)}: {key} is " in line and line.endswith("re-export the artifact")
    if key == "input.size":  # the CLI: exit 2, one line, no traceback
        result = run_cli("parity", str(art), "--n", "2")
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "input.size is 'big'" in result.stderr


def test_the_export_result_is_what_the_file_holds(fashion_artifact):
    art = fashion_artifact("onnx")
    assert read_manifest(art).to_dict() == _written(art)


def manifest_subscripts(path: Path) -> list[str]:
    """``manifest[`` and ``manifest.get(`` in ``path``: a manifest is read through its attributes."""
    return [
        f"{path.name}:{n}: {line.strip()}"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if SUBSCRIPT.search(line)
    ]


def test_no_module_subscripts_a_manifest():
    files = [p for p in sorted(PACKAGE.rglob("*.py")) if p != MANIFEST_MODULE]
    assert len(files) > 40
    found = [m for p in files for m in manifest_subscripts(p)]
    assert found == [], "\n".join(found)


def test_the_subscript_scan_finds_what_it_looks_for(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        'def f(manifest, r):\n    size = manifest["input"]["size"]\n'
        '    return r.manifest.get("parity"), self.manifest["target"], manifest.input.size\n'
    )
    assert [m.split(": ", 1)[1] for m in manifest_subscripts(bad)] == [
        'size = manifest["input"]["size"]',
        'return r.manifest.get("parity"), self.manifest["target"], manifest.input.size',
    ]


def test_the_device_sides_lists_are_the_host_registries():
    """The manifest check runs on a board without the host's registries: each list it keeps equals its source, so a
    new precision, target, domain or interpolation cannot drift (the manifest would refuse what export writes)."""
    from dataclasses import fields

    from mvit_deploy.device import manifest as m
    from mvit_deploy.device.runtimes import RUNNERS
    from mvit_deploy.inputs.datasets import DOMAINS
    from mvit_deploy.inputs.preprocess import _RESAMPLE, Preprocessing
    from mvit_deploy.models import config
    from mvit_deploy.targets import TARGETS, all_precisions, options_of

    assert set(m.PRECISIONS) == set(all_precisions())
    assert list(RUNNERS) != [] and set(RUNNERS) == set(TARGETS)  # the targets a manifest may name
    assert m.DOMAINS == tuple(DOMAINS)
    assert m.INTERPOLATIONS == tuple(_RESAMPLE)
    assert list(m.PreprocessingKeys.KEYS) == [f.name for f in fields(Preprocessing)]
    layouts = {c for opt, _ in options_of("export").values() if opt.field == "layout" for c in opt.choices}
    assert layouts and layouts <= set(m.LAYOUTS)
    for order in m.CHANNEL_ORDERS:
        Preprocessing(channel_order=order)  # each one the host takes
    assert config.MAX_INPUT_SIZE is m.MAX_INPUT_SIZE  # one constant, imported


def test_the_manifest_takes_exactly_the_input_sizes_the_cli_takes():
    from mvit_deploy.device.manifest import SIZE
    from mvit_deploy.models import check_input_size

    def cli_takes(size: int) -> bool:
        try:
            return check_input_size(size) == size
        except UsageError:
            return False

    sizes = range(-64, 1300, 16)
    assert [s for s in sizes if SIZE[0](s)] == [s for s in sizes if cli_takes(s)]
    assert [s for s in sizes if SIZE[0](s)][:2] == [64, 128] and max(s for s in sizes if SIZE[0](s)) == 1024


def test_export_refuses_a_head_the_manifest_would_refuse(tmp_path):
    from mvit_deploy.device.manifest import MAX_CLASSES, MIN_CLASSES
    from mvit_deploy.targets import ExportOptions, get_target

    for classes in (MIN_CLASSES - 1, MAX_CLASSES + 1):
        with pytest.raises(UsageError, match="--num-classes"):
            get_target("onnx").resolve(ExportOptions("mobilevit_xxs", "onnx", tmp_path, num_classes=classes))


def test_a_valid_manifest_passes_every_value_check():
    """The checks refuse what is wrong, not what export writes: the corpus's sidecar (export's layout) reads."""
    from hostile import sidecar

    data = sidecar("x.onnx")
    data["input"].update(sizes=[64, 128], batch="dynamic", shape=["batch", 3, 64, 64])
    data["output"].update(labels=[f"c{i}" for i in range(10)])
    manifest = Manifest.from_dict(data, "x.json")
    assert manifest.to_dict() == data
