"""Hostile and mistaken input (issues 11, 33): the contract every command keeps, whatever the input.

The cases live by kind: test_bad_args.py, test_bad_images.py, test_bad_weights.py, test_bad_manifests.py,
test_bad_results.py, test_bad_outputs.py, test_bad_device.py; the corpus they share is made in hostile.py. Every case
ends with exit 2, one line on stderr naming the problem and its fix, nothing on stdout, no traceback, and nothing
written.
"""

from __future__ import annotations

import importlib
import re
import tempfile
from pathlib import Path

import pytest
from helpers import run_cli


def test_top_level_help_documents_the_exit_codes():
    result = run_cli("--help")
    assert result.returncode == 0
    assert re.search(r"0\s+ok", result.stdout) and re.search(r"1\s+a bound or check failed", result.stdout)
    assert re.search(r"2\s+usage or input error", result.stdout) and re.search(r"3\s+internal error", result.stdout)


def test_an_unexpected_exception_is_exit_3_with_its_traceback_in_a_log(monkeypatch, tmp_path):
    from click.testing import CliRunner

    from mvit_deploy.faces import cli
    from mvit_deploy.models import card

    def crash():
        raise RuntimeError("a bug\nover two lines")

    monkeypatch.setattr(card, "all_cards", crash)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    result = CliRunner().invoke(cli.main, ["models", "--json"])
    assert result.exit_code == 3
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert (
        "error: internal error: RuntimeError: a bug over two lines — please report it; full traceback in "
        in result.stderr
    )
    log = Path(result.stderr.rsplit("full traceback in ", 1)[1].strip())
    assert log.parent == tmp_path and "Traceback" in log.read_text() and "crash" in log.read_text()


CASE_FILES = [
    "test_bad_args",
    "test_bad_images",
    "test_bad_weights",
    "test_bad_manifests",
    "test_bad_results",
    "test_bad_outputs",
    "test_bad_device",
    "test_bad_artifacts",
]


def test_the_corpus_covers_every_command():
    from mvit_deploy.faces.cli import main

    covered = {p.values[0][0] for module in CASE_FILES for p in importlib.import_module(module).CASES}
    assert set(main.commands) <= covered, f"no bad-input case for {sorted(set(main.commands) - covered)}"


def test_the_library_refuses_the_counts_the_cli_refuses(tmp_path):
    """A library caller meets the same one-line rules as the CLI's flags (they are the library's, the CLI asks it)."""
    from mvit_deploy.bench import BenchRequest, check_request
    from mvit_deploy.errors import UsageError
    from mvit_deploy.pipeline.evaluate import evaluate
    from mvit_deploy.pipeline.export import plan_exports
    from mvit_deploy.pipeline.parity import parity
    from mvit_deploy.pipeline.quant_report import quant_report
    from mvit_deploy.targets import ExportOptions

    calls = {
        "--threads 0": lambda: plan_exports(
            ExportOptions(model="mobilevit_xxs", target="onnx", out_dir=tmp_path, threads=0)
        ),
        "--calib-samples 0": lambda: plan_exports(
            ExportOptions(model="mobilevit_xxs", target="onnx", out_dir=tmp_path, calib_samples=0)
        ),
        "--iters 1": lambda: check_request(BenchRequest(artifacts=("a.onnx",), iters=1)),
        "--warmup -1": lambda: check_request(BenchRequest(artifacts=("a.onnx",), warmup=-1)),
        "--n 0": lambda: parity("missing.onnx", n=0),
        "--workers 0": lambda: evaluate(["missing.onnx"], workers=0),
    }
    for expected, call in calls.items():
        with pytest.raises(UsageError, match=f"{expected} is out of range"):
            call()
    with pytest.raises(UsageError, match="--n 0 is out of range"):
        quant_report("missing.onnx", n=0)
