"""Per-layer SQNR of an int8 artifact against its float twin: which block to keep in float.

For every activation both programs compute, SQNR = 10*log10(sum(ref^2) / sum((ref - q)^2)),
over the same held-out photos. "cumulative" compares the int8 program's tensor with the
float program's (all error up to that point); "local", where the runtime gives it, is the
error of that tensor's own quantize/dequantize step. Each target reads its runtime's
intermediate tensors (``Target.layer_errors``) and names the PyTorch module a tensor comes
from (``Target.layer_module``, from torch.export's module stack).
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..artifact import Manifest, read_manifest
from ..errors import UsageError, at_least
from ..metrics import sqnr_db  # noqa: F401  (re-exported: the number this report is made of)


@dataclass
class LayerError:
    tensor: str
    module: str
    cumulative_sqnr_db: float
    local_sqnr_db: float | None = None


def module_of_fx_nodes(model, size: int) -> dict[str, str]:
    """fx node name -> dotted module path, from torch.export's nn_module_stack."""
    import torch

    from ..targets.quantize import fx_module_paths

    return fx_module_paths(torch.export.export(model, (torch.zeros(1, 3, size, size),)).run_decompositions({}))


def _float_twin(manifest: Manifest, tmp: Path, weights=None):
    """Export the float counterpart of an int8 artifact (same model, weights, size, target options)."""
    from ..targets import ExportOptions, get_target
    from .export import export

    target = get_target(manifest.target)
    opts = ExportOptions(
        model=manifest.model,
        target=target.name,
        out_dir=tmp,
        precision=target.default_precision,
        input_size=manifest.input.size,
        weights=weights or manifest.checkpoint.path,
        # --pretrained exports record no path: the twin loads the same named weights (not the fixture)
        pretrained=None if (weights or manifest.checkpoint.path) else manifest.checkpoint.pretrained,
        num_classes=manifest.output.classes,
        target_options=target.twin_options(manifest),
    )
    return export(opts, run_parity=False)


def quant_report(artifact: str | Path, n: int = 4, weights=None) -> list[LayerError]:
    """Layers sorted worst first (lowest cumulative SQNR)."""
    from ..targets import QUANTIZED, get_target

    at_least("--n", n, 1, 4)
    from .parity import check_artifact_contents, check_reference_weights, parity_inputs, reference_model

    artifact = Path(artifact)
    manifest = read_manifest(artifact)
    if manifest.precision not in QUANTIZED:
        raise UsageError(
            f"{artifact.name} is {manifest.precision}, not a quantized artifact",
            "run quant-report on an int8 export",
        )
    target = get_target(manifest.target)
    if not target.layer_report:  # refused before the float twin is exported
        raise UsageError(f"quant-report does not read {target.name} artifacts yet", target.layer_report_hint)
    check_reference_weights(manifest, weights)
    check_artifact_contents(artifact, manifest)  # an int8 label over a float file would compare it with itself
    x = parity_inputs(manifest, None, n)
    model = reference_model(manifest, weights)  # the checkpoint (file or --pretrained name) the artifact came from
    modules = module_of_fx_nodes(model, manifest.input.size)
    with tempfile.TemporaryDirectory() as tmp:
        twin = _float_twin(manifest, Path(tmp), weights)
        rows = target.layer_errors(twin.artifact, artifact, x, manifest)
    out = [LayerError(name, target.layer_module(name, modules), cumulative, local) for name, cumulative, local in rows]
    return sorted(out, key=lambda r: r.cumulative_sqnr_db)


def blocks_summary(layers: list[LayerError], depth: int = 3) -> list[tuple[str, float]]:
    """Worst SQNR per module prefix (e.g. ``stages.2.1``), worst first.

    Uses the local (own quantize/dequantize) SQNR where the runtime gives it, since the
    cumulative one always looks worst at the end of the network; else the cumulative one.
    """
    worst: dict[str, float] = {}
    for layer in layers:
        if layer.module:
            key = ".".join(layer.module.split(".")[:depth])
            value = layer.local_sqnr_db if layer.local_sqnr_db is not None else layer.cumulative_sqnr_db
            worst[key] = min(worst.get(key, float("inf")), value)
    return sorted(worst.items(), key=lambda t: t[1])


def to_dict(layers: list[LayerError]) -> list[dict]:
    return [
        {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in asdict(layer).items()}
        for layer in layers
    ]
