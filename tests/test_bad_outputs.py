"""Outputs: what a failed, interrupted or refused run leaves behind (nothing), staging, and unwritable destinations."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import copy_artifact, run_cli
from hostile import bench_run, refused_in_one_line

LONG = "x" * 300  # one name over the 255 bytes a file system takes: ENAMETOOLONG

# Outputs refused before any work (argv with {d} = the corpus, {out} = a fresh output folder; words stderr must
# contain). As root a chmod 0o555 folder is writable, so these use a path under a file (ENOTDIR, any user) and a
# name too long; the read-only and full file systems are real tmpfs mounts below (when this machine allows them).
CASES = [
    pytest.param(
        ["export", "--pretrained", "fashion", "--target", "onnx", "--out", "{d}/matching.onnx/sub"],
        "--out {d}/matching.onnx/sub: {d}/matching.onnx is a file, not a folder",
        id="export-out-under-a-file",
    ),
    pytest.param(
        ["export", "--pretrained", "fashion", "--target", "onnx", "--out", f"{{out}}/{LONG}"],
        "is 300 bytes long, over the 255",
        id="export-out-name-too-long",
    ),
    pytest.param(
        ["bench", "{d}/matching.onnx", "--json", "{d}/matching.onnx/sub/b.json"],
        "--json {d}/matching.onnx/sub/b.json: {d}/matching.onnx is a file, not a folder",
        id="bench-json-under-a-file",
    ),
    pytest.param(
        ["bench", "{d}/matching.onnx", "--json", f"{{out}}/{LONG}.json"],
        "is 305 bytes long, over the 255",
        id="bench-json-name-too-long",
    ),
    pytest.param(
        ["parity", "{d}/matching.onnx", "--junit-xml", "{d}/matching.onnx/parity.xml"],
        "--junit-xml {d}/matching.onnx/parity.xml: {d}/matching.onnx is a file, not a folder",
        id="parity-junit-under-a-file",
    ),
    pytest.param(
        ["parity", "{d}/matching.onnx", "--junit-xml", f"{{out}}/{LONG}.xml"],
        "is 304 bytes long, over the 255",
        id="parity-junit-name-too-long",
    ),
]

# The same for report, over a folder of this file's own (a valid bench result: only the output is wrong).
MORE_CASES = [
    pytest.param(
        ["report", "{d}/bench.json", "--out", "{d}/bench.json/report"],
        "--out {d}/bench.json/report: {d}/bench.json is a file, not a folder",
        id="report-out-under-a-file",
    ),
    pytest.param(
        ["report", "{d}/bench.json", "--out", f"{{out}}/{LONG}"],
        "is 300 bytes long, over the 255",
        id="report-out-name-too-long",
    ),
]


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("outputs")
    (d / "bench.json").write_text(json.dumps(bench_run()))
    return d


def _with_d(args, message, d):
    return args, message.replace("{d}", str(d))


@pytest.mark.parametrize("args, message", CASES)
def test_an_unwritable_output_is_refused_before_any_work(args, message, corpus, tmp_path):
    refused_in_one_line(*_with_d(args, message, corpus), corpus, tmp_path)


@pytest.mark.parametrize("args, message", MORE_CASES)
def test_an_unwritable_report_folder_is_refused(args, message, results_dir, tmp_path):
    refused_in_one_line(*_with_d(args, message, results_dir), results_dir, tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a 0o555 folder: the tmpfs and ENOTDIR cases cover it")
def test_a_read_only_folder_is_refused(results_dir, tmp_path_factory, tmp_path):
    locked = tmp_path_factory.mktemp("locked")
    locked.chmod(0o555)
    refused_in_one_line(
        ["report", "{d}/bench.json", "--out", f"{locked}/report"], "Permission denied", results_dir, tmp_path
    )


# ---------------------------------------------------------------------------- real read-only and full file systems


def in_mount(options: str, mount: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The console script with a fresh tmpfs (``options``: ro, size=...) at ``mount``, in a private mount namespace
    (nothing outlives the command); the staging entries left in the mount are listed in ``mount``.staging."""
    exe = Path(sys.executable).with_name("mvit-deploy")
    script = (
        'mount -t tmpfs -o "$1" tmpfs "$2" || exit 99; m="$2"; shift 2; "$@"; rc=$?; '
        'find "$m" -name ".*.tmp-*" > "$m.staging"; exit $rc'
    )
    return subprocess.run(
        ["unshare", "-rm", "sh", "-c", script, "sh", options, str(mount), str(exe), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=600,
    )


@pytest.fixture(scope="module")
def mounts(tmp_path_factory):
    """Skip unless this machine lets a process mount a tmpfs in its own namespace (root, or user namespaces)."""
    probe = tmp_path_factory.mktemp("probe")
    try:
        done = subprocess.run(
            ["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=4k tmpfs {probe}"],
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        done = None
    if done is None or done.returncode != 0:
        pytest.skip("no private tmpfs mount here (unshare -rm), so no real read-only or full file system")
    return in_mount


def _one_line_exit_2(result, *words):
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == "", result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


@pytest.mark.parametrize(
    "args, flag",
    [
        (["export", "--pretrained", "fashion", "--target", "onnx", "--out", "{m}/out"], "--out"),
        (["report", "{bench}", "--out", "{m}/report"], "--out"),
        (["bench", "{d}/matching.onnx", "--json", "{m}/bench.json"], "--json"),
        (["parity", "{d}/matching.onnx", "--junit-xml", "{m}/parity.xml"], "--junit-xml"),
    ],
    ids=["export", "report", "bench", "parity"],
)
def test_a_read_only_file_system_is_refused_before_any_work(args, flag, mounts, corpus, results_dir, tmp_path):
    mount = tmp_path / "ro"
    mount.mkdir()
    argv = [
        a.replace("{m}", str(mount)).replace("{d}", str(corpus)).replace("{bench}", str(results_dir / "bench.json"))
        for a in args
    ]
    result = mounts("ro", mount, *argv, cwd=tmp_path)
    _one_line_exit_2(result, f"{flag} {argv[-1]} cannot be written (Read-only file system)")


def test_a_full_disk_while_writing_names_the_file(mounts, results_dir, tmp_path):
    """The output folder is writable when checked, then the disk fills: exit 2 naming the file, no staging left."""
    mount = tmp_path / "small"
    mount.mkdir()
    result = mounts("size=8k", mount, "report", str(results_dir / "bench.json"), "--out", f"{mount}/r", cwd=tmp_path)
    _one_line_exit_2(result, f"cannot write {mount}/r/report.html (No space left on device)", "free some space")
    assert (tmp_path / "small.staging").read_text() == ""


@pytest.mark.slow  # an export (10 s alone, 35 s on two busy cores)
def test_a_full_disk_under_a_converter_names_the_artifact(mounts, tmp_path):
    """The ONNX exporter writes 5 MB into a 1 MB file system: exit 2 naming the artifact, not an internal error."""
    mount = tmp_path / "small"
    mount.mkdir()
    result = mounts(
        "size=1m", mount, "export", "--pretrained", "fashion", "--target", "onnx", "--out", f"{mount}/x", cwd=tmp_path
    )
    _one_line_exit_2(result, f"cannot write {mount}/x/mobilevit_xxs-onnx-fp32.onnx (No space left on device)")
    assert (tmp_path / "small.staging").read_text() == ""


def test_stdout_that_cannot_be_written_is_exit_2_naming_stdout(results_dir, tmp_path):
    """`... > /dev/full`: the report is written, its "wrote" lines are not; exit 2, not an internal error."""
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    exe = Path(sys.executable).with_name("mvit-deploy")
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [str(exe), "report", str(results_dir / "bench.json"), "--out", str(tmp_path / "r")],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
            timeout=300,
        )
    assert result.returncode == 2, result.stderr
    assert (
        result.stderr == "error: cannot write to stdout (No space left on device) — redirect it to a file system "
        "with free space, or to /dev/null\n"
    )


def test_staged_names_the_file_a_full_disk_refused(tmp_path):
    import errno

    from mvit_deploy.artifact import staged
    from mvit_deploy.errors import UsageError

    final = tmp_path / "bench.json"
    with pytest.raises(UsageError) as e, staged(final) as tmp:
        tmp.write_text("{}")
        raise OSError(errno.ENOSPC, "No space left on device")  # what a stream's write raises: no file name
    assert (
        e.value.one_line() == f"cannot write {final} (No space left on device) — free some space, or write "
        "somewhere else"
    )
    assert list(tmp_path.iterdir()) == []
    elsewhere = PermissionError(errno.EACCES, "Permission denied", "/etc/shadow")  # reading another file: not ours
    with pytest.raises(PermissionError), staged(final):
        raise elsewhere


def test_a_long_final_name_gets_a_staging_entry_that_fits(tmp_path):
    from mvit_deploy.artifact import staged

    final = tmp_path / ("r" * 250 + ".json")  # a valid name; ".<name>.tmp-<pid>-<random>" around it is not
    with staged(final) as tmp:
        tmp.write_text("{}")
    assert final.read_text() == "{}" and [p.name for p in tmp_path.iterdir()] == [final.name]


# ---------------------------------------------------------------------------- the tables render any result


def test_every_table_renders_none_and_nan(capsys):
    """JSON writes NaN and infinity as null: a table must print them, never raise a TypeError."""
    from types import SimpleNamespace

    from rich.console import Console

    from mvit_deploy.faces import tables

    nan = float("nan")
    metrics = {"max_abs": None, "max_rel": None, "psnr_db": None, "top1_agreement": None}
    metrics |= {"decisive_top1_agreement": nan, "n_decisive": None}
    flip = {"index": 0, "reference": 1, "artifact": 2, "decisive": True, "margin": None, "margin_rel": nan}
    device = {"name": "pi", "kind": "ssh", "cpu": "A76", "machine": "aarch64", "os": "Linux", "runtimes": {}}
    tables.print_parity(
        [
            {"artifact": "a.onnx", "passed": False, "n_images": 4, "metrics": metrics, "flips": [flip]},
            {
                "artifact": "b.onnx",
                "passed": False,
                "metrics": metrics,
                "device": device,
                "runtime": "ort",
                "device_vs_host": {"max_rel": None, "top1_agreement": nan},
                "host": {"machine": "x86_64", "runtime": "ort", "passed": False, "metrics": metrics},
            },
        ]
    )
    tables.print_models(
        [
            {
                "name": "m",
                "family_title": "v1",
                "input_size": 256,
                "params_m": None,
                "gmacs": nan,
                "summary": "",
                "sources": [],
            }
        ]
    )
    console = Console(width=200)
    run = bench_run()
    run["results"][0] |= {"load_ms": None, "bytes": None, "throughput_ips": nan}
    run["results"][0]["latency_ms"] |= {"min": None, "mean": nan}
    tables.print_bench(console, run, 2)
    run["baseline"] = {"same_device": True, "missing": [], "file": "b.json", "max_regression": 0.1, "method": "U"}
    run["results"][0]["comparison"] = {
        "verdict": "within noise",
        "ci95": None,
        "baseline_p50_ms": None,
        "p50_ms": nan,
        "change": None,
        "p_value": None,
    }
    tables.print_comparison(console, run)
    row = SimpleNamespace(
        artifact="a.onnx",
        precision="int8",
        drop_ci95=None,
        bound={"value": None},
        passed=False,
        reference={"top1": None},
        artifact_metrics={"top1": nan, "top5": None},
        drop_points=None,
        mcnemar_p=nan,
        noise="",
        top1_agreement=None,
        flipped=0,
    )
    tables.print_eval(SimpleNamespace(data="set", rows=[row]))
    layer = SimpleNamespace(tensor="t", module="m", cumulative_sqnr_db=None, local_sqnr_db=nan)
    tables.print_quant_report([layer], [("block", None)], 4, 15)
    out = capsys.readouterr().out
    assert "NaN" in out and "FAIL" in out


@pytest.fixture(scope="module")
def nan_artifact(fashion_artifact, tmp_path_factory) -> Path:
    """The shipped Fashion-MNIST XXS as ONNX with one stem weight set to NaN (every output NaN), re-signed."""
    import onnx
    from onnx import numpy_helper

    from mvit_deploy.artifact import manifest_path, tree_sha256

    path = copy_artifact(fashion_artifact("onnx"), tmp_path_factory.mktemp("nan-artifact"))
    model = onnx.load(str(path))
    weight = next(t for t in model.graph.initializer if len(t.dims) == 4)
    array = numpy_helper.to_array(weight).copy()
    array.flat[0] = np.nan
    weight.CopyFrom(numpy_helper.from_array(array, weight.name))
    onnx.save(model, str(path))
    manifest = json.loads(manifest_path(path).read_text())
    manifest["sha256"] = tree_sha256(path)
    manifest_path(path).write_text(json.dumps(manifest))
    return path


def test_parity_of_a_nan_artifact_is_a_one_line_fail_in_the_table(nan_artifact, tmp_path):
    result = run_cli("parity", str(nan_artifact), "--n", "4", cwd=tmp_path)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stdout + result.stderr and "internal error" not in result.stderr
    row = next(line for line in result.stdout.splitlines() if nan_artifact.name in line and "FAIL" in line)
    assert row.count("NaN") == 2, row  # max rel and PSNR: not "inf", which would read as identical outputs
    notes = [line for line in result.stdout.splitlines() if line.startswith(f"{nan_artifact.name}: ")]
    assert len(notes) == 1 and "NaN or infinite" in notes[0], notes
    result = run_cli("parity", str(nan_artifact), "--n", "4", "--json", cwd=tmp_path)
    assert result.returncode == 1 and json.loads(result.stdout)["passed"] is False, result.stderr[-2000:]


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
