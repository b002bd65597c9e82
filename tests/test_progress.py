"""Progress lines: on a terminal only, never in --json output, never in a pipe."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import run_cli


def on_terminal(*args: str) -> tuple[int, str, str]:
    """Run the CLI with stderr on a pseudo-terminal (stdout a pipe); return (exit code, stdout, terminal text)."""
    exe = Path(sys.executable).with_name("mvit-deploy")
    master, slave = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "160", "HF_HUB_OFFLINE": "1"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen([str(exe), *args], stdout=subprocess.PIPE, stderr=slave, env=env)
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    out = proc.stdout.read().decode()
    proc.wait(timeout=600)
    os.close(master)
    return proc.returncode, out, b"".join(chunks).decode(errors="replace")


@pytest.fixture(scope="module")
def onnx_artifact(fashion_artifact):
    return fashion_artifact("onnx")


def test_bench_rounds_and_parity_steps_show_on_a_terminal(onnx_artifact):
    code, out, term = on_terminal("bench", str(onnx_artifact), "--iters", "400", "--warmup", "1")
    assert code == 0 and "benchmark rounds" in term and "/400" in term, term[-2000:]
    assert "benchmark rounds" not in out  # the table goes to stdout, the progress line to the terminal's stderr only
    code, out, term = on_terminal("parity", str(onnx_artifact))
    assert code == 0 and "PyTorch reference on 128 images" in term, term[-2000:]


def test_no_progress_with_json_or_in_a_pipe(onnx_artifact):
    code, out, term = on_terminal("parity", str(onnx_artifact), "--json")
    assert code == 0 and "images" not in term and out.lstrip().startswith("{"), term[-2000:]
    piped = run_cli("bench", str(onnx_artifact), "--iters", "400", "--warmup", "1")
    assert piped.returncode == 0 and "benchmark rounds" not in piped.stderr + piped.stdout


def test_eval_counts_images_on_a_terminal(onnx_artifact):
    code, out, term = on_terminal("eval", str(onnx_artifact), "--data", "fashion-mnist:subset", "--batch", "8")
    assert code == 0 and "images" in term and "/1000" in term, term[-2000:]
    assert "/1000" not in out
