"""Devices: the ssh command line (no option smuggled in through the user or host, ``--`` before every destination)
and what a board answers (checked before it is trusted). No real board: ssh and scp are faked.

The CASES run the console script under a memory cap in an empty folder (hostile.refused_in_one_line): the
``ProxyCommand=touch pwned`` they carry would create ``pwned`` in that folder, which the helper refuses.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers import run_cli
from hostile import MEMORY_CAP, bench_result, bench_run, refused_in_one_line

from mvit_deploy.bench import ssh as ssh_module
from mvit_deploy.bench.ssh import RemoteError, SshDevice, device_answer

PROXY = "-oProxyCommand=touch${IFS}pwned"  # what ssh would run, were this user or host read as an option

# (argv with {d} = the corpus (conftest.corpus) and {out} = a fresh output folder, words stderr must contain)
CASES = [
    pytest.param(
        ["bench", "{d}/matching.onnx", "--device", f"ssh://{PROXY}@board"],
        "starts with '-', which ssh would read as an option",
        id="bench-ssh-user-is-an-option",
    ),
    pytest.param(
        ["parity", "{d}/matching.onnx", "--device", f"ssh://pi@{PROXY}"],
        "starts with '-', which ssh would read as an option",
        id="parity-ssh-host-is-an-option",
    ),
    pytest.param(
        ["bench", "{d}/matching.onnx", "--device", "ssh://pi@my board"],
        "holds a space",
        id="bench-ssh-host-with-a-space",
    ),
]


@pytest.mark.parametrize("args, message", CASES)
def test_bad_device_is_refused_in_one_line(args, message, corpus, tmp_path):
    refused_in_one_line(args, message, corpus, tmp_path)


# ---------------------------------------------------------------------------- the argv, faked subprocess


class FakeBoard:
    """Stands in for ``subprocess.run`` in bench/ssh.py: records every argv and answers as the device side would
    (``answer``: the JSON the remote ``bench`` or ``run`` prints)."""

    def __init__(self, answer: str = "", n: int = 2):
        self.argvs: list[list[str]] = []
        self.answer, self.n = answer, n

    def __call__(self, argv, **kw):
        self.argvs.append(list(argv))
        out = ""
        if argv[0] == "ssh" and "mktemp" in argv[-1]:
            out = "/tmp/mvit-device.abc123\n"
        elif argv[0] == "ssh" and "mvit_deploy_device" in argv[-1]:
            out = self.answer
        elif argv[0] == "scp" and argv[-1].endswith("logits.npz"):  # fetching the logits: write them here
            np.savez(argv[-1], logits=np.zeros((self.n, 10), np.float32))
        return subprocess.CompletedProcess(argv, 0, out, "")


def run_answer(**overrides) -> dict:
    answer = {
        "protocol": 1,
        "device": {"name": "pi", "kind": "local", "cpu": "Cortex-A76", "os": "Linux 6.1", "machine": "aarch64"},
        "runtime": "onnxruntime",
        "n": 2,
        "seconds": 0.1,
    }
    return {**answer, **overrides}


@pytest.mark.parametrize(
    "spec",
    [
        f"ssh://{PROXY}@board",
        f"ssh://pi@{PROXY}",
        "ssh://-lroot@board",
        "ssh://-oProxyCommand=x",
        "ssh://pi@-board:2222",
        "ssh://pi@my board",
    ],
)
def test_a_user_or_host_that_would_be_an_option_never_reaches_ssh(spec, corpus, monkeypatch):
    calls = FakeBoard()
    monkeypatch.setattr(ssh_module.subprocess, "run", calls)
    with pytest.raises(ssh_module.UsageError) as e:
        SshDevice.parse(spec).bench([corpus / "matching.onnx"], 1, 0, 2)
    assert e.value.exit_code == 2 and "bad ssh device" in e.value.one_line()
    assert calls.argvs == []


def test_every_ssh_and_scp_argv_ends_its_options_before_the_destination(corpus, monkeypatch):
    board = FakeBoard(json.dumps(bench_run(results=[bench_result(artifact="/tmp/mvit-device.abc123/matching.onnx")])))
    monkeypatch.setattr(ssh_module.subprocess, "run", board)
    dev = SshDevice.parse("ssh://pi@board:2222", identity="/k ey", options=("ConnectTimeout=3",))
    dev.bench([corpus / "matching.onnx"], 1, 0, 2)
    board.answer = json.dumps(run_answer())
    dev.run_logits(corpus / "matching.onnx", np.zeros((2, 3, 64, 64), np.float32))
    assert {a[0] for a in board.argvs} == {"ssh", "scp"} and len(board.argvs) >= 8
    for argv in board.argvs:
        assert "--" in argv, argv
        options, operands = argv[: argv.index("--")], argv[argv.index("--") + 1 :]
        assert not any(a == "pi@board" or a.startswith("pi@board:") for a in options), argv
        assert any(a == "pi@board" or a.startswith("pi@board:") for a in operands), argv
    assert dev.ssh_command(["true"])[-3:-1] == ["--", "pi@board"]


BAD_BENCH_ANSWERS = {
    "device-a-list": bench_run(device=["pi"]),
    "result-without-artifact": bench_run(results=[{"latency_ms": {"mean": 1.0}}]),
    "results-an-object": bench_run(results={"a.onnx": 1.0}),
    "latency-text": bench_run(results=[bench_result(latency_ms={"mean": "fast", "std": 0.1})]),
    "no-settings": {k: v for k, v in bench_run().items() if k != "settings"},
}


@pytest.mark.parametrize("answer", BAD_BENCH_ANSWERS.values(), ids=BAD_BENCH_ANSWERS.keys())
def test_a_bench_answer_of_the_wrong_shape_is_refused_naming_the_board(answer, corpus, monkeypatch):
    monkeypatch.setattr(ssh_module.subprocess, "run", FakeBoard(json.dumps(answer)))
    with pytest.raises(RemoteError) as e:
        SshDevice.parse("ssh://pi@board").bench([corpus / "matching.onnx"], 1, 0, 2)
    assert e.value.exit_code == 2 and "pi@board" in e.value.one_line() and "wrong shape" in e.value.one_line()


@pytest.mark.parametrize(
    "text",
    ["[" * 100_000 + "]" * 100_000, '{"device": NaN, "results": []}', "Welcome to the board!\n", ""],
    ids=["nested-deep", "nan", "a-banner", "nothing"],
)
def test_an_answer_that_is_not_json_is_refused_naming_the_board(text, corpus, monkeypatch):
    monkeypatch.setattr(ssh_module.subprocess, "run", FakeBoard(text))
    with pytest.raises(RemoteError, match="pi@board gave no answer"):
        SshDevice.parse("ssh://pi@board").bench([corpus / "matching.onnx"], 1, 0, 2)


@pytest.mark.parametrize(
    "answer",
    [
        run_answer(device={"name": "pi"}),  # the parity table reads its cpu, machine and os
        run_answer(device="pi"),
        run_answer(runtime=3),
        run_answer(seconds="fast"),
        run_answer(device={**run_answer()["device"], "runtimes": ["onnxruntime"]}),
    ],
    ids=["device-without-machine", "device-a-string", "runtime-a-number", "seconds-text", "runtimes-a-list"],
)
def test_a_run_answer_of_the_wrong_shape_is_refused_naming_the_board(answer, tmp_path):
    logits = tmp_path / "logits.npz"
    np.savez(logits, logits=np.zeros((2, 10), np.float32))
    with pytest.raises(RemoteError, match="on pi@board gave no answer of the device side's shape"):
        device_answer(json.dumps(answer), logits, 2, "running a.onnx", "pi@board")
    assert device_answer(json.dumps(run_answer()), logits, 2, "running a.onnx", "pi@board")[1]["runtime"]


def test_the_cli_refuses_a_board_answering_the_wrong_shape_in_one_line(corpus, tmp_path):
    """End to end with stand-in ssh and scp on PATH: exit 2 naming the board, never a KeyError (exit 3)."""
    import os

    log, bin_dir = tmp_path / "calls.log", tmp_path / "bin"
    bin_dir.mkdir()
    answer = json.dumps(bench_run(results=[{"latency_ms": {"mean": 1.0}}]))
    for name in ("ssh", "scp"):
        (bin_dir / name).write_text(
            "#!/bin/sh\n"
            f'printf "{name} %s\\n" "$*" >> {log}\n'
            'case "$*" in\n'
            "  *mktemp*) echo /tmp/mvit-device.abc123 ;;\n"
            f"  *mvit_deploy_device*) echo '{answer}' ;;\n"
            "esac\n"
        )
        (bin_dir / name).chmod(0o755)
    work = tmp_path / "cwd"
    work.mkdir()
    result = run_cli(
        "bench",
        str(corpus / "matching.onnx"),
        "--device",
        "ssh://pi@board",
        cwd=work,
        env={"PATH": f"{bin_dir}:{os.environ['PATH']}"},
        memory_cap=MEMORY_CAP,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "pi@board" in result.stderr and "results[0] has no artifact" in result.stderr, result.stderr
    calls = Path(log).read_text().splitlines()
    assert calls and all(" -- " in c for c in calls), calls
