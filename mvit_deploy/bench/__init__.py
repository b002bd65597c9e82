"""Latency benchmarks: here, on a board over ssh, on an Android phone over adb, on Qualcomm AI Hub's hosted phones.
Torch-free."""

from __future__ import annotations

from .local import SCHEMA, bench, device_info, latency_stats

__all__ = ["DEVICES", "SCHEMA", "bench", "connect", "device_info", "latency_stats", "run_on_device", "run_on_devices"]


DEVICES = 'local | ssh://user@host[:port] | adb[:serial] | aihub:"<AI Hub device name>"'


def run_on_devices(devices, artifacts, threads: int = 2, warmup: int = 5, iters: int = 50, **kw) -> list[dict]:
    """One bench result per device. Several devices at once are AI Hub's hosted phones (profiled in parallel)."""
    from ..errors import UsageError

    devices = list(dict.fromkeys(devices))
    if len(devices) == 1:
        return [run_on_device(devices[0], artifacts, threads, warmup, iters, **kw)]
    others = [d for d in devices if not d.startswith("aihub:")]
    if others:
        raise UsageError(
            f"several --device at once are AI Hub devices only, not {others[0]!r}",
            "bench each local, ssh or adb device in its own run",
        )
    from .aihub import bench_many

    return bench_many(
        devices, artifacts, threads, warmup, iters, progress=kw.get("progress"), timeout_s=kw.get("aihub_timeout")
    )


def run_on_device(device: str, artifacts, threads: int = 2, warmup: int = 5, iters: int = 50, **kw) -> dict:
    """``device``: one of :data:`DEVICES`."""
    from ..errors import UsageError

    if kw.get("reference") and device != "local":
        raise UsageError("--reference times PyTorch on this machine only", "drop --reference, or bench --device local")
    if device == "local":
        return bench(
            artifacts,
            threads,
            warmup,
            iters,
            reference=kw.get("reference", False),
            on_round=kw.get("on_round"),
            **kw.get("runtime_options", {}),
        )
    if device.startswith("ssh://"):
        from .ssh import SshDevice

        return SshDevice.parse(
            device,
            identity=kw.get("identity"),
            options=kw.get("ssh_options", ()),
            python=kw.get("remote_python", "python3"),
        ).bench(artifacts, threads, warmup, iters)
    if device == "adb" or device.startswith("adb:"):
        from .adb import AdbDevice

        binaries = kw.get("benchmark_binary") or ()
        if not binaries:
            raise UsageError(
                "adb devices run each runtime's own benchmark binary",
                "pass --benchmark-binary PATH (an android_aarch64 build)",
            )
        return AdbDevice.parse(device).bench(artifacts, binaries, threads, warmup, iters)
    if device.startswith("aihub:"):
        from .aihub import AihubDevice

        return AihubDevice.parse(device).bench(
            artifacts, threads, warmup, iters, progress=kw.get("progress"), timeout_s=kw.get("aihub_timeout")
        )
    raise UsageError(f"unknown device {device!r}", f"use {DEVICES}")


# Devices that compute an artifact's logits themselves (parity --device): the device side runs there.
LOGIT_DEVICES = "ssh://user@host[:port] | adb[:serial]"


def connect(device: str, identity=None, ssh_options=(), remote_python: str = "python3"):
    """A device that runs artifacts on itself (``run_logits``), for ``parity --device``."""
    from ..errors import UsageError

    if device.startswith("ssh://"):
        from .ssh import SshDevice

        return SshDevice.parse(device, identity=identity, options=ssh_options, python=remote_python)
    if device == "adb" or device.startswith("adb:"):
        from .adb import AdbDevice

        return AdbDevice.parse(device, python=remote_python)
    if device.startswith("aihub:"):
        raise UsageError(
            "parity on AI Hub's hosted phones (its inference jobs) is not built yet",
            "run parity on a board over ssh or adb, or on this machine",
        )
    raise UsageError(f"unknown device {device!r}", f"use {LOGIT_DEVICES}")
