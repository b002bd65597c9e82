"""The README's tested command block, run line by line as a newcomer would."""

from __future__ import annotations

import json
import re
import shlex
import shutil

from conftest import ROOT, run_cli


def readme_commands() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- readme-test -->\s*```bash\n(.*?)```", text, re.S)
    assert block, "README lost its tested command block"
    lines = [line for line in block.group(1).splitlines() if line.strip()]
    assert all(line.startswith(".venv/bin/mvit-deploy ") for line in lines)
    return [shlex.split(line)[1:] for line in lines]


def test_readme_commands_run(tmp_path):
    shutil.copytree(
        ROOT / "mvit_deploy" / "calibration" / "photos", tmp_path / "mvit_deploy" / "calibration" / "photos"
    )
    shutil.copytree(
        ROOT / "mvit_deploy" / "datasets",
        tmp_path / "mvit_deploy" / "datasets",
        ignore=shutil.ignore_patterns("*.py", "*.npz"),
    )
    commands = readme_commands()
    assert any(c[0] == "export" for c in commands) and any(c[0] == "parity" for c in commands)
    for args in commands:
        result = run_cli(*args, cwd=tmp_path)
        assert result.returncode == 0, f"{' '.join(args)}\n{result.stderr[-2000:]}"
        if args[0] == "parity":
            assert json.loads(result.stdout)["passed"] is True
        if args[0] == "predict" and "--pretrained" in args:
            assert result.stdout.splitlines()[0].split()[1:3] == ["Ankle", "boot"], result.stdout
    out = tmp_path / "out"
    for name in (
        "mobilevit_xxs-onnx-fp32.onnx",
        "mobilevit_xxs-tflite-fp32-nhwc.tflite",
        "mobilevit_xxs-coreml-fp16.mlpackage",
        "parity.xml",
    ):
        assert (out / name).exists(), name
