"""Outputs: what a failed, interrupted or refused run leaves behind (nothing), staging, and unwritable destinations."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest


def test_a_stale_staging_entry_of_a_dead_process_is_swept(tmp_path):
    import os
    import subprocess
    import time

    from mvit_deploy.artifact import sweep_staging

    dead = subprocess.Popen(["true"])
    dead.wait()  # its pid now names no running process (reuse within the test is harmless: then nothing is swept)
    old = time.time() - 3600
    stale = tmp_path / f".mobilevit_xxs-onnx-fp32.onnx.tmp-{dead.pid}-abc123"
    stale.mkdir()
    (stale / "mobilevit_xxs-onnx-fp32.onnx").write_bytes(b"half an artifact")
    legacy = tmp_path / ".mobilevit_xxs-onnx-fp32.json.tmp-k2j4h5"  # before pids were in the name
    legacy.write_text("{}")
    live = tmp_path / f".other.onnx.tmp-{os.getppid()}-xyz"  # a running process's: kept even if old
    live.mkdir()
    fresh = tmp_path / f".new.onnx.tmp-{dead.pid}-new"  # written after this process started: kept
    fresh.mkdir()
    mine = [tmp_path / ".hidden-notes.tmp", tmp_path / "model.onnx.tmp-1-a", tmp_path / "result.onnx"]  # not our names
    for p in mine:
        p.write_text("user data")
    for p in (stale, legacy, live, *mine):
        os.utime(p, (old, old))
    removed = sweep_staging(tmp_path, started=time.time() - 60)
    assert sorted(removed) == sorted([stale, legacy])
    assert (
        not stale.exists()
        and not legacy.exists()
        and live.exists()
        and fresh.exists()
        and all(p.exists() for p in mine)
    )


def test_a_write_sweeps_stale_staging_of_the_same_file_only(tmp_path):
    """bench --json, parity --junit-xml and report go through ``staged``: a SIGKILLed write of the same file is
    swept."""
    import os
    import subprocess
    import time

    from mvit_deploy.artifact import staged

    dead = subprocess.Popen(["true"])
    dead.wait()
    old = time.time() - 3600
    stale = tmp_path / f".bench.json.tmp-{dead.pid}-abc123"
    stale.mkdir()
    other = tmp_path / f".report.md.tmp-{dead.pid}-abc123"  # another file's: left for its own next write
    other.mkdir()
    for p in (stale, other):
        os.utime(p, (old, old))
    with staged(tmp_path / "bench.json") as tmp:
        tmp.write_text("{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == [other.name, "bench.json"]


def test_sigterm_during_a_staged_write_removes_the_staging_entry(tmp_path):
    """Every command runs inside ``interruptible``: SIGTERM unwinds through ``staged`` like Ctrl-C."""
    import os
    import signal

    from mvit_deploy.artifact import Terminated, interruptible, staged

    final = tmp_path / "report.html"
    with pytest.raises(Terminated) as e, interruptible(), staged(final) as tmp:
        tmp.write_text("half a report")
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):  # the handler runs at the next bytecode boundary
            pass
    assert e.value.signum == signal.SIGTERM
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, "the previous handler is restored"


def test_output_folder_created_by_a_failed_run_is_removed(tmp_path):
    from mvit_deploy.artifact import output_folder

    with pytest.raises(RuntimeError), output_folder(tmp_path / "new"):
        raise RuntimeError("conversion failed")
    assert not (tmp_path / "new").exists()
    (tmp_path / "kept").mkdir()
    with pytest.raises(RuntimeError), output_folder(tmp_path / "kept"):
        raise RuntimeError("conversion failed")
    assert (tmp_path / "kept").is_dir(), "a folder the user made is never removed"


@pytest.mark.parametrize("signame, code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_an_interrupted_export_leaves_nothing(signame, code, tmp_path):
    """Ctrl-C or SIGTERM while the converter writes into its staging folder: exit 128+n, no staging, no --out."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "out"
    exe = Path(sys.executable).with_name("mvit-deploy")
    proc = subprocess.Popen(
        [str(exe), "export", "--target", "onnx", "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not list(out.glob(".*.tmp-*")):
        time.sleep(0.05)
    assert proc.poll() is None, f"export ended before it could be interrupted: {proc.communicate()[1][-500:]}"
    time.sleep(0.5)  # the converter is at work
    proc.send_signal(getattr(signal, signame))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err[-1000:]
    assert "Traceback" not in err and err.strip().endswith("interrupted")
    assert not out.exists(), f"left behind: {sorted(p.name for p in out.rglob('*'))}"


@pytest.mark.parametrize("wrapper", ["RuntimeError from it", "UsageError while handling it"])
def test_a_ctrl_c_a_converter_wrapped_is_still_an_interrupt(wrapper, monkeypatch, tmp_path, capsys):
    """torch.export turns a Ctrl-C inside it into TorchExportError (seen at 1 s into the ONNX export):
    that must exit 130 with "interrupted" and leave nothing, not an "internal error, please report"."""
    from mvit_deploy.errors import UsageError
    from mvit_deploy.faces.cli import main
    from mvit_deploy.pipeline import export as export_module

    def converter_wrapping_ctrl_c(opts, on_step=None):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as e:
            if wrapper == "RuntimeError from it":
                raise RuntimeError("Failed to export the model with torch.export") from e
            raise UsageError("the converter failed", "see above") from RuntimeError("wrapped")

    monkeypatch.setattr(export_module, "export", converter_wrapping_ctrl_c)
    with pytest.raises(SystemExit) as done:
        main.main(["export", "--target", "onnx", "--out", str(tmp_path / "out")], standalone_mode=True)
    err = capsys.readouterr().err
    assert done.value.code == 130 and err.strip() == "interrupted", err
    assert not (tmp_path / "out").exists()


def test_a_failed_export_keeps_no_artifact_unless_asked(monkeypatch, tmp_path):
    """Parity FAIL: nothing written (and no --out this run created), unless keep_failed."""
    from mvit_deploy import targets as runtimes
    from mvit_deploy.pipeline.export import export
    from mvit_deploy.targets import ExportOptions, get_target
    from mvit_deploy.targets.base import Converted

    target = type(get_target("onnx"))

    def fake_convert(self, model, example, opts, dest, calibration=None):
        dest.write_bytes(b"a converted model")
        return Converted()

    class WrongRunner:
        runtime = "fake"

        def __call__(self, x):
            return np.random.default_rng(0).normal(size=(len(x), 10)).astype(np.float32)

    monkeypatch.setattr(target, "convert", fake_convert)
    monkeypatch.setattr(target, "check", lambda self, path: None)
    monkeypatch.setattr(runtimes, "load_runner", lambda path, manifest, threads=None: WrongRunner())
    opts = ExportOptions(
        model="mobilevit_xxs", target="onnx", out_dir=tmp_path / "out", pretrained="fashion", parity_n=4
    )  # shipped: loads fast
    result = export(opts)
    assert not result.kept and not result.parity.passed
    assert not (tmp_path / "out").exists()
    kept = export(dataclasses.replace(opts, keep_failed=True))
    assert kept.kept and kept.artifact.read_bytes() == b"a converted model" and kept.manifest_path.exists()
    assert json.loads(kept.manifest_path.read_text())["parity"]["passed"] is False
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "mobilevit_xxs-onnx-fp32.json",
        "mobilevit_xxs-onnx-fp32.onnx",
    ]


def test_a_ctrl_c_a_converter_swallows_still_stops_the_export(monkeypatch, tmp_path):
    """The ONNX exporter can catch the KeyboardInterrupt (torch.export wraps it; the exporter retries another
    strategy and finishes): the interrupt still wins, and nothing is written. Seen as exit 0 under CI load."""
    import signal

    from mvit_deploy.artifact import interruptible
    from mvit_deploy.pipeline.export import export
    from mvit_deploy.targets import ExportOptions, get_target
    from mvit_deploy.targets.base import Converted

    target = type(get_target("onnx"))

    interrupts = [signal.SIGINT]  # one Ctrl-C, during the first export only

    def swallowing_convert(self, model, example, opts, dest, calibration=None):
        try:  # Ctrl-C arrives: the handler installed for this run runs (called here, so the test is not timing)
            if interrupts:
                signal.getsignal(signal.SIGINT)(interrupts.pop(), None)
        except KeyboardInterrupt:
            pass  # what a converter's fallback does
        dest.write_bytes(b"converted anyway")
        return Converted()

    monkeypatch.setattr(target, "convert", swallowing_convert)
    monkeypatch.setattr(target, "check", lambda self, path: None)
    opts = ExportOptions(model="mobilevit_xxs", target="onnx", out_dir=tmp_path / "out", pretrained="fashion")
    with pytest.raises(KeyboardInterrupt), interruptible():
        export(opts, run_parity=False)
    assert not (tmp_path / "out").exists()
    export(opts, run_parity=False)  # the next run, with no interrupt, writes as usual
    assert (tmp_path / "out" / "mobilevit_xxs-onnx-fp32.onnx").read_bytes() == b"converted anyway"
