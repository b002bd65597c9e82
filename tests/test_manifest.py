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
