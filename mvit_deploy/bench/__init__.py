"""Latency benchmarks: here, on a board over ssh, on an Android phone over adb. Torch-free."""

from __future__ import annotations

from .local import SCHEMA, bench, device_info, latency_stats

__all__ = ["SCHEMA", "bench", "device_info", "latency_stats", "run_on_device"]


def run_on_device(device: str, artifacts, threads: int = 2, warmup: int = 5, iters: int = 50, **kw) -> dict:
    """``device``: "local", "ssh://user@host[:port]" or "adb[:serial]"."""
    from ..errors import UsageError

    if device == "local":
        return bench(artifacts, threads, warmup, iters, reference=kw.get("reference", False), **kw.get("runtime_options", {}))
    if device.startswith("ssh://"):
        from .ssh import SshDevice

        return SshDevice.parse(device, identity=kw.get("identity"), options=kw.get("ssh_options", ()), python=kw.get("remote_python", "python3")).bench(artifacts, threads, warmup, iters)
    if device == "adb" or device.startswith("adb:"):
        from .adb import AdbDevice

        binaries = kw.get("benchmark_binary") or ()
        if not binaries:
            raise UsageError("adb devices run each runtime's own benchmark binary", "pass --benchmark-binary PATH (an android_aarch64 build)")
        return AdbDevice.parse(device).bench(artifacts, binaries, threads, warmup, iters)
    raise UsageError(f"unknown device {device!r}", "use local, ssh://user@host[:port] or adb[:serial]")
