"""Parity: run an artifact in its own runtime and the PyTorch reference on the same real photos."""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import numpy as np

from ..artifact import Manifest, read_manifest
from ..errors import DependencyError, MvitDeployError, NonFiniteError, UsageError, at_least
from ..metrics import fidelity, finite_or_none, flipped
from ..models.families import rule_for


@dataclass
class ParityReport:
    artifact: str
    target: str
    precision: str
    n_images: int
    metrics: dict[str, float]
    runtime: str = ""
    bounds: list[dict] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    decisive_margin: float = 0.0  # fraction of peak |logit| (tolerances.Rule)
    flips: list[dict] = field(default_factory=list)  # every changed top-1, with its reference margin
    # parity --device: the logits judged are the device's; ``device`` names it (name, kind, cpu, machine, os,
    # runtimes, isa, emulated, seconds), ``host`` is the same artifact on this machine ({runtime, metrics, passed}
    # or {skipped}), ``device_vs_host`` how far the two runs' logits are apart (max_rel of the host's peak, top-1
    # agreement)
    device: dict | None = None
    host: dict | None = None
    device_vs_host: dict | None = None

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def where(self) -> str:
        """`` on <device>`` for a device's verdict, else empty."""
        return f" on {self.device['name']}" if self.device else ""

    def to_dict(self) -> dict:
        return finite_or_none({**asdict(self), "passed": self.passed})  # JSON has no inf / NaN: null

    def to_junit_xml(self) -> str:
        cases = []
        for b in self.bounds:
            name = quoteattr(f"{b['metric']} {b['op']} {b['value']:g}")
            body = f"<failure message={quoteattr(b['message'])}/>" if not b["passed"] else ""
            cases.append(
                f"  <testcase classname={quoteattr('parity.' + Path(self.artifact).name + self.where)} "
                f"name={name}>{body}</testcase>"
            )
        props = ""
        if self.device:
            d = self.device
            items = {
                "device": d.get("name"),
                "device.cpu": d.get("cpu"),
                "device.machine": d.get("machine"),
                "device.os": d.get("os"),
                "device.emulated": d.get("emulated") or "no",
                **{f"device.runtime.{k}": v for k, v in (d.get("runtimes") or {}).items()},
            }
            if self.host and "metrics" in self.host:
                items.update(
                    {
                        f"host.{k}": f"{self.host['metrics'][k]:g}"
                        for k in ("max_rel", "psnr_db")
                        if self.host["metrics"].get(k) is not None
                    }
                )
            props = (
                "  <properties>\n"
                + "".join(f"    <property name={quoteattr(k)} value={quoteattr(str(v))}/>\n" for k, v in items.items())
                + "  </properties>\n"
            )
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<testsuite name={quoteattr('mvit-deploy parity ' + escape(Path(self.artifact).name) + self.where)} "
            f'tests="{len(cases)}" failures="{len(self.failures)}">\n' + props + "\n".join(cases) + "\n</testsuite>\n"
        )


def check_bounds(target: str, precision: str, metrics: dict[str, float], family: str) -> tuple[list[dict], list[str]]:
    rows, failures = [], []
    for bound in rule_for(precision, family).bounds:
        value = float(metrics[bound.metric])
        ok = bool(bound.holds(value))
        message = f"{bound.metric} = {value:.6g}, bound {bound.describe()} ({bound.reason})"
        rows.append(
            {
                "metric": bound.metric,
                "op": bound.op,
                "value": bound.value,
                "measured": value,
                "passed": ok,
                "message": message,
                "reason": bound.reason,
            }
        )
        if not ok:
            failures.append(message)
    return rows, failures


def judge(
    artifact,
    target: str,
    precision: str,
    ref: np.ndarray,
    got: np.ndarray,
    runtime: str,
    family: str,
) -> ParityReport:
    """Metrics, bounds and flipped samples of artifact logits ``got`` against reference ``ref`` (bounds: the
    precision's row for the model's family, ``ModelFamily.rule``)."""
    margin = rule_for(precision, family).decisive_margin
    metrics = fidelity(ref, got, margin)
    rows, failures = check_bounds(target, precision, metrics, family)
    broken = int(np.count_nonzero(~np.isfinite(got)))
    if broken:
        failures.insert(0, f"logits: {broken} of {got.size} values from the artifact are NaN or infinite")
    return ParityReport(
        str(artifact), target, precision, len(ref), metrics, runtime, rows, failures, margin, flipped(ref, got, margin)
    )


def manifest_family(manifest: Manifest) -> str:
    """The model family an artifact was exported from: its manifest's, else (manifests written before families
    existed) its registered model's. A manifest naming a family its model is not of is refused."""
    from ..models.config import get_spec

    family = get_spec(manifest.model).family
    if manifest.family not in (None, family):
        raise UsageError(
            f"manifest of {manifest.artifact} says family {manifest.family}, but {manifest.model} is a {family}",
            "re-export the artifact",
        )
    return family


# The artifact's weight count against its manifest's model. Counted as base.is_weight counts (tensors of two or
# more dimensions above 1), it equals the PyTorch model's exactly on every export measured (2026-12-07): XXS on
# onnx / ort fp32 + int8, tflite fp32 + int8, coreml fp32 / fp16 / int8 / w8a8, executorch fp32 + int8; XS onnx
# int8, S tflite fp32, mobilevitv2_050 onnx fp32 + tflite int8; onnx --batch dynamic too. Only ort --ort-platform
# amd64 differs: its NCHWc layouts pad a few channels (XXS +0.23 %). The slack covers such padding; the closest two
# registered models (mobilevit_s, mobilevitv2_100) are 12 % apart.
WEIGHT_TOLERANCE = 0.02


@functools.lru_cache(maxsize=32)
def model_weights(model: str, classes: int) -> int:
    """Elements of the weights (``is_weight``) of ``model`` with a ``classes`` head, counted on the meta device (no
    memory, no checkpoint)."""
    need_torch()
    import torch

    from ..models import create_model
    from ..targets.base import is_weight

    with torch.device("meta"):
        net = create_model(model, num_classes=classes)
    return sum(p.numel() for p in net.parameters() if is_weight(p.shape))


def check_artifact_contents(artifact: Path, manifest: Manifest) -> None:
    """Refuse a manifest the artifact itself contradicts (its target, precision or model), before any model loads:
    a verdict's bounds come from the manifest's precision and its reference from the manifest's model."""
    from ..artifact import manifest_path
    from ..models.config import MODELS
    from ..targets import get_target

    artifact, family = Path(artifact), manifest_family(manifest)
    target, sidecar = get_target(manifest.target), manifest_path(artifact).name
    fix = "re-export it, or put back the manifest export wrote beside it"
    if artifact.suffix != target.suffix:
        raise UsageError(
            f"manifest {sidecar} says target {manifest.target}, but {artifact.name} is not a {target.suffix} file", fix
        )
    contents = target.read_contents(artifact)
    if contents.precision is not None and contents.precision != manifest.precision:
        raise UsageError(
            f"manifest {sidecar} says {manifest.precision}, but {artifact.name} holds {contents.evidence}: it is "
            f"{contents.precision}",
            fix,
        )
    if contents.weights is None:
        return
    classes = manifest.output.classes

    def fits(model: str) -> bool:
        expected = model_weights(model, classes)
        return abs(contents.weights - expected) <= WEIGHT_TOLERANCE * expected

    if fits(manifest.model):
        return
    other = next((m for m in MODELS if fits(m)), None)
    found = f"as {other} does" if other else f"which no registered model with {classes} classes has"
    raise UsageError(
        f"manifest {sidecar} says {manifest.model} ({family}: {model_weights(manifest.model, classes):,} weights with "
        f"{classes} classes), but {artifact.name} holds {contents.weights:,}, {found}",
        fix,
    )


def manifest_preprocessing(manifest: Manifest):
    from ..inputs.preprocess import Preprocessing

    if manifest.input.preprocessing is None:  # the values themselves were checked as the manifest was read
        raise UsageError(
            f"the manifest of {manifest.artifact} lacks input.preprocessing, which makes its inputs", "re-export it"
        )
    return Preprocessing(**{k: tuple(v) if isinstance(v, list) else v for k, v in manifest.input.preprocessing.items()})


def parity_inputs(manifest: Manifest, images: str | Path | None = None, n: int | None = None) -> np.ndarray:
    """The parity set of the artifact's domain (64 photo crops, 128 Fashion-MNIST test images), or the user's folder."""
    from ..inputs.datasets import get_domain

    x = get_domain(manifest.domain).parity_inputs(manifest.input.size, manifest_preprocessing(manifest), images)
    if n is not None:
        if n < 1:
            raise UsageError(f"--n {n} is not a positive number of images", "use e.g. --n 8")
        x = x[:n]
    return x


def check_reference_weights(manifest: Manifest, weights: str | Path | None) -> None:
    """Refuse a --weights that cannot be the artifact's reference, before any model loads."""
    if weights is None:
        return
    if manifest.checkpoint.layout == "fixture":
        raise UsageError(
            f"{manifest.artifact} was exported from the untrained test fixture, so --weights does not apply",
            "drop --weights",
        )
    if not Path(weights).is_file():
        raise UsageError(
            f"the reference checkpoint {weights} does not exist", "pass the checkpoint the artifact was exported from"
        )


def need_torch() -> None:
    """The PyTorch reference needs torch: a board's install (mvit-deploy[device]) has none, and says so in one line."""
    from .._deps import has

    if not has("torch"):
        raise DependencyError(
            "the PyTorch reference needs torch, which this install lacks (mvit-deploy[device] is a board's)",
            "run parity on the host (pip install 'mvit-deploy[export]'), with --device ssh://<this board> to run the "
            "artifact here",
        )


def reference_model(manifest: Manifest, weights: str | Path | None = None):
    """The PyTorch model the artifact was exported from (needs torch)."""
    need_torch()
    from ..models import load_model

    check_reference_weights(manifest, weights)
    ckpt = manifest.checkpoint
    if ckpt.layout == "fixture":
        return load_model(manifest.model, num_classes=manifest.output.classes)
    if weights is None and ckpt.pretrained:
        model = load_model(manifest.model, pretrained=ckpt.pretrained, num_classes=manifest.output.classes)
        if model.checkpoint_sha256 != ckpt.sha256:
            raise UsageError(
                f"the {ckpt.pretrained} weights changed since this artifact was exported (sha256 differs)",
                "re-export it",
            )
        return model
    path = Path(weights or ckpt.path)
    if not path.exists():
        raise UsageError(f"the reference checkpoint {path} is gone", "pass it with --weights PATH")
    model = load_model(manifest.model, path, num_classes=manifest.output.classes)
    if model.checkpoint_sha256 != ckpt.sha256:
        raise UsageError(
            f"{path} is not the checkpoint this artifact was exported from (sha256 differs)",
            "pass the original with --weights",
        )
    return model


# Activation memory one reference batch may take: 8 images up to 512 px, fewer above (1 at 1024 px).
REFERENCE_BATCH_BYTES = 2 * 10**9


def reference_logits(model, x: np.ndarray) -> np.ndarray:
    import torch

    from ..models.config import forward_bytes

    step = int(max(1, min(8, REFERENCE_BATCH_BYTES // forward_bytes(model.cfg, x.shape[-1]))))
    with torch.no_grad():
        logits = torch.cat([model(torch.from_numpy(x[i : i + step])) for i in range(0, len(x), step)]).numpy()
    broken = int(np.count_nonzero(~np.isfinite(logits)))
    if broken:
        raise NonFiniteError(
            f"the PyTorch reference's logits hold {broken} NaN or infinite values of {logits.size}",
            "check the checkpoint's weights",
        )
    return logits


def parity(
    artifact: str | Path,
    images=None,
    n: int | None = None,
    weights=None,
    threads: int | None = None,
    model=None,
    on_step=lambda s: None,
    device=None,
) -> ParityReport:
    """Compare an exported artifact with its PyTorch reference on real photos.

    ``device``: a connected device (``bench.connect``) that computes the artifact's logits itself; the
    verdict is then the device's, and the report carries this machine's run of the same artifact beside it.
    """
    at_least("--n", n, 1, 8)
    at_least("--threads", threads, 1, 2)
    from ..targets import load_runner

    artifact = Path(artifact)
    manifest = read_manifest(artifact)
    check_reference_weights(manifest, weights)
    x = parity_inputs(manifest, images, n)  # a bad --images folder or --n is refused before any model loads
    if model is None:
        need_torch()
    check_artifact_contents(artifact, manifest)  # the bounds are the manifest precision's: is the file that?
    if device is not None:
        on_step(f"{artifact.name} on {len(x)} images on {device.target}")
        got, answer = device.run_logits(artifact, x, threads)
        runtime = answer["runtime"]
    else:
        on_step(f"loading {artifact.name}")
        runner = load_runner(artifact, manifest, threads)
    on_step(f"PyTorch reference on {len(x)} images")
    ref = reference_logits(model if model is not None else reference_model(manifest, weights), x)
    family = manifest_family(manifest)
    if device is None:
        on_step(f"{artifact.name} on {len(x)} images")
        return judge(artifact, manifest.target, manifest.precision, ref, runner(x), runner.runtime, family)
    report = judge(artifact, manifest.target, manifest.precision, ref, got, runtime, family)
    report.device = {**answer["device"], "seconds": answer.get("seconds")}
    on_step(f"{artifact.name} on {len(x)} images here")
    report.host, host = host_run(artifact, manifest, x, ref, threads, family)
    if host is not None:
        apart = fidelity(host, got)  # the host's run as the reference: max_rel of its peak
        report.device_vs_host = finite_or_none({k: apart[k] for k in ("max_rel", "top1_agreement")})
    return report


def host_run(
    artifact: Path, manifest: Manifest, x: np.ndarray, ref: np.ndarray, threads, family: str
) -> tuple[dict, np.ndarray | None]:
    """The same artifact on this machine, judged by the same bounds: ({runtime, machine, cpu, metrics, passed}, logits),
    or ({skipped: why}, None) when this machine cannot run it."""
    import platform

    from ..device.bench import cpu_model
    from ..targets import load_runner

    try:
        runner = load_runner(artifact, manifest, threads)
        got = runner(x)
    except MvitDeployError as e:
        return {"skipped": e.one_line()}, None
    here = judge(artifact, manifest.target, manifest.precision, ref, got, runner.runtime, family)
    return {
        "runtime": runner.runtime,
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "metrics": finite_or_none(here.metrics),
        "passed": here.passed,
    }, got
