"""The one walk every target shares: model -> export -> check -> parity -> artifact + manifest."""

from __future__ import annotations

import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from .. import __version__
from ..artifact import (
    CheckpointInfo,
    InputSpec,
    Manifest,
    OutputSpec,
    artifact_stem,
    interruptible,
    manifest_path,
    output_folder,
    package_versions,
    staged,
    sweep_staging,
    tree_bytes,
    tree_sha256,
    write_json_atomic,
)
from ..errors import DependencyError, NotOnThisDevice
from ..targets import ExportOptions, get_target
from ..targets.base import QUANTIZED
from .parity import ParityReport, judge, parity_inputs, reference_logits


def calibration_inputs(pre, size: int, images=None, samples: int = 64, domain: str = "photos"):
    """Calibration inputs of the model's domain, disjoint from its parity set (or the user's folder)."""
    from ..inputs.datasets import get_domain

    return get_domain(domain).calibration_inputs(size, pre, images, samples)


@dataclass
class ExportResult:
    artifact: Path
    manifest_path: Path
    manifest: Manifest
    parity: ParityReport | None
    kept: bool = True  # False: parity failed and the artifact was removed (ExportOptions.keep_failed keeps it)


class _Discard(Exception):
    """Leave the staged artifact unrenamed: ``staged`` then removes it."""


def _versions(packages) -> dict[str, str]:
    return {"mvit-deploy": __version__, "python": platform.python_version(), **package_versions(("torch", *packages))}


def export(
    opts: ExportOptions, on_step: Callable[[str], None] = lambda s: None, run_parity: bool = True
) -> ExportResult:
    """Export one artifact; its parity result is in the manifest.

    Failed parity writes nothing unless ``opts.keep_failed`` (the result says ``kept=False``).
    Ctrl-C, SIGTERM or an error leave no staging entry, and no ``out_dir`` this call created;
    entries a killed run left in ``out_dir`` are swept first.
    """
    with interruptible(), output_folder(Path(opts.out_dir)) as out:
        sweep_staging(out)
        return _export(opts, on_step, run_parity)


def plan_exports(opts: ExportOptions, targets: Sequence[str] | None = None) -> list[ExportOptions]:
    """``opts`` resolved for each of ``targets`` (default: ``opts.target``), every one checked before any export.

    With several targets each takes the target options it has flags for (``--target all``); with one, an
    option it lacks is refused by its flag. A ``calib`` folder is checked here, before a model loads.
    """
    from ..inputs.images import image_files

    targets = [opts.target] if targets is None else list(targets)
    plans = []
    for name in targets:
        target = get_target(name)
        given = target.takes(opts.target_options) if len(targets) > 1 else opts.target_options
        plans.append(target.resolve(replace(opts, target=name, target_options=given)))
    if opts.calib is not None:
        image_files(opts.calib, check=True)  # an empty folder or a bad file is refused now, not after the model loads
    return plans


def _export(opts: ExportOptions, on_step: Callable[[str], None], run_parity: bool) -> ExportResult:
    import torch

    from ..inputs.datasets import get_domain
    from ..inputs.images import image_files
    from ..models import check_input_size, default_input_size, get_spec, load_model
    from ..targets import load_runner

    target = get_target(opts.target)
    opts = target.resolve(opts)  # the target's defaults, one set for the library and the CLI
    for folder in (opts.calib if opts.precision in QUANTIZED else None, opts.parity_images):
        if folder is not None:
            image_files(folder, check=True)  # a bad folder is refused before the model loads
    spec = get_spec(opts.model)  # looked up once, passed down
    trained_size = default_input_size(spec, opts.weights, opts.pretrained)
    size = check_input_size(trained_size if opts.input_size is None else opts.input_size, opts.model)
    on_step(f"loading {opts.model}")
    model = load_model(spec, opts.weights, num_classes=opts.num_classes, pretrained=opts.pretrained)
    pre = model.preprocessing

    stem = artifact_stem(opts.model, target.name, opts.precision, target.stem_tags(opts), size, trained_size)
    dynamic, layout = target.dynamic_batch(opts), target.input_layout(opts)
    lead = "batch" if dynamic else 1  # the input's first dimension
    final = Path(opts.out_dir) / f"{stem}{target.suffix}"
    manifest = Manifest(
        artifact=final.name,
        model=opts.model,
        family=spec.family,
        domain=model.domain,
        target=target.name,
        precision=opts.precision,
        input=InputSpec(
            name="image",
            shape=[lead, size, size, 3] if layout == "nhwc" else [lead, 3, size, size],
            batch="dynamic" if dynamic else 1,
            layout=layout,
            dtype="float32",
            size=size,
            sizes=[size, *opts.more_sizes] if opts.more_sizes else None,
            type="tensor",
            scale=pre.scale,
            channel_order=pre.channel_order,
            mean=list(pre.mean),
            std=list(pre.std),
            preprocessing=pre.to_dict(),
        ),
        output=OutputSpec(
            name="logits",
            shape=[lead, model.num_classes],
            dtype="float32",
            classes=model.num_classes,
            labels=get_domain(model.domain).named_classes(model.num_classes),
        ),
        checkpoint=CheckpointInfo(
            layout=model.source_layout,
            path=str(Path(opts.weights).resolve()) if opts.weights else None,
            pretrained=opts.pretrained,
            sha256=model.checkpoint_sha256,
        ),
        versions=_versions(target.converter_packages),
    )
    x = parity_inputs(manifest, opts.parity_images, opts.parity_n)
    example = torch.from_numpy(x[:1])
    calibration = None
    if opts.precision in QUANTIZED:
        calibration = calibration_inputs(pre, size, opts.calib, opts.calib_samples, model.domain)
        manifest.calibration = {
            "source": opts.calib or f"shipped {model.domain} calibration split",
            "samples": len(calibration),
        }
    try:
        with staged(final) as tmp:
            on_step(f"converting to {target.name} ({opts.precision})")
            converted = target.convert(model, example, opts, tmp, calibration)
            target.check(tmp)
            manifest.input.update(name=converted.input_name, **converted.input)
            manifest.output.update(name=converted.output_name, **converted.output)
            manifest.update(**converted.extra)
            report = None
            if run_parity:
                on_step(f"parity on {len(x)} photo crops")
                try:
                    runner = load_runner(tmp, manifest, opts.threads)
                except (
                    DependencyError,
                    NotOnThisDevice,
                ) as e:  # a runtime missing here: say so, never pass (other errors propagate)
                    manifest.parity = {"passed": None, "skipped": e.one_line()}
                else:
                    report = judge(
                        final,
                        target.name,
                        opts.precision,
                        reference_logits(model, x),
                        runner(x),
                        runner.runtime,
                        manifest.family,
                    )
                    manifest.parity = report.to_dict()
                    for extra in opts.more_sizes:  # every declared size is checked, not only the default one
                        on_step(f"parity at {extra} px")
                        xe = parity_inputs(
                            replace(manifest, input=replace(manifest.input, size=extra)),
                            opts.parity_images,
                            opts.parity_n,
                        )
                        extra_report = judge(
                            final,
                            target.name,
                            opts.precision,
                            reference_logits(model, xe),
                            runner(xe),
                            runner.runtime,
                            manifest.family,
                        )
                        manifest.parity_sizes = {**(manifest.parity_sizes or {}), str(extra): extra_report.to_dict()}
                        if report.passed and not extra_report.passed:
                            report = extra_report  # the verdict is the worst size's
                            manifest.parity = {
                                **manifest.parity,
                                "passed": False,
                                "failures": [f"at {extra} px: {f}" for f in extra_report.failures],
                            }
            manifest.sha256 = tree_sha256(tmp)
            manifest.bytes = tree_bytes(tmp)
            if report is not None and not report.passed and not opts.keep_failed:
                raise _Discard  # staged() removes it; a previous artifact at ``final`` stays as it was
    except _Discard:
        return ExportResult(final, manifest_path(final), manifest, report, kept=False)
    write_json_atomic(manifest_path(final), manifest.to_dict())
    return ExportResult(final, manifest_path(final), manifest, report)
