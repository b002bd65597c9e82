"""Parity checks inside a user's own pytest suite (registered through the ``pytest11`` entry point).

Every exported artifact becomes a test case with its bounds::

    pytest --mvit-artifacts out/ --junit-xml parity.xml      # the parity cases alone
    pytest tests/ --mvit-artifacts out/                      # with your own tests
    pytest --mvit-artifacts out/ --mvit-device ssh://pi@raspberrypi.local --mvit-identity ~/.ssh/id_ed25519
                                                             # the logits computed on the board

and a hand-written test checks one artifact, with its own bounds or the shipped ones::

    from mvit_deploy.faces.pytest_plugin import assert_parity

    def test_my_int8_model():
        report = assert_parity("out/mobilevit_xxs-tflite-int8.tflite", n=16)
        assert report.metrics["top1_agreement"] >= 0.9  # a stricter bound of your own

A case fails with the parity verdict's own lines (metric, measured value, bound and the
measurement behind the bound); an artifact this machine cannot run is skipped, naming why. The
metrics go into the JUnit XML as properties. The PyTorch reference of each checkpoint is loaded
once per session, however many artifacts were exported from it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ..artifact import Manifest
from ..errors import MvitDeployError, NotOnThisDevice

GROUP = "mvit-deploy"


def artifact_suffixes() -> set[str]:
    from ..targets import TARGETS

    return {t.suffix for t in TARGETS.values()}


def find_artifacts(folder: Path) -> list[Path]:
    """Exported artifacts directly in ``folder``, in name order (a manifest beside each is read when the case runs)."""
    suffixes = artifact_suffixes()
    return sorted(p for p in folder.iterdir() if p.suffix in suffixes and not p.name.startswith("."))


class ParityFailed(AssertionError):
    def __init__(self, report):
        self.report = report
        lines = [
            f"{Path(report.artifact).name} ({report.target} {report.precision}, {report.runtime}, {report.n_images} "
            "images): parity failed"
        ]
        lines += [f"  {f}" for f in report.failures]
        for flip in report.flips[:5]:
            lines.append(f"  flipped: {flip}")
        super().__init__("\n".join(lines))


_models: dict[tuple, object] = {}  # (model, checkpoint sha256, weights) -> the reference model, once per session


def _reference(manifest: Manifest, weights):
    from ..pipeline.parity import reference_model

    key = (manifest.model, manifest.checkpoint.sha256, manifest.output.classes, str(weights))
    if key not in _models:
        _models[key] = reference_model(manifest, weights)
    return _models[key]


def assert_parity(artifact, images=None, n: int | None = None, weights=None, threads: int | None = None, device=None):
    """Run ``artifact`` and its PyTorch reference on the parity set (or ``images``); raise AssertionError
    naming every bound that fails, return the :class:`~mvit_deploy.pipeline.parity.ParityReport` when all hold.

    ``device``: ``ssh://user@host[:port]`` (or a device from ``mvit_deploy.bench.connect``, with its key and
    options): the logits judged are computed there."""
    from ..artifact import read_manifest
    from ..pipeline.parity import check_reference_weights, parity, parity_inputs

    manifest = read_manifest(artifact)
    check_reference_weights(manifest, weights)
    parity_inputs(manifest, images, n)  # a bad --mvit-images / --mvit-n is refused before the model loads
    if isinstance(device, str):
        from ..bench import connect

        device = connect(device)
    report = parity(
        artifact,
        images=images,
        n=n,
        weights=weights,
        threads=threads,
        model=_reference(manifest, weights),
        device=device,
    )
    if not report.passed:
        raise ParityFailed(report)
    return report


@pytest.fixture
def mvit_parity(request):
    """:func:`assert_parity` as a fixture, with the command line's ``--mvit-images``, ``--mvit-n``,
    ``--mvit-weights`` and ``--mvit-threads`` as defaults."""
    opt = request.config.getoption
    defaults = {
        "images": opt("--mvit-images"),
        "n": opt("--mvit-n"),
        "weights": opt("--mvit-weights"),
        "threads": opt("--mvit-threads"),
        "device": _device(request.config),
    }

    def check(artifact, **kw):
        return assert_parity(artifact, **{**defaults, **kw})

    return check


def pytest_addoption(parser):
    group = parser.getgroup(GROUP, "mvit-deploy parity of exported artifacts")
    group.addoption(
        "--mvit-artifacts",
        action="append",
        default=[],
        metavar="DIR",
        help="Folder of exported artifacts: each becomes a parity test case (repeatable).",
    )
    group.addoption(
        "--mvit-images", default=None, metavar="DIR", help="Parity photos (default: the artifact's own parity set)."
    )
    group.addoption("--mvit-n", type=int, default=None, metavar="N", help="Use only the first N parity images.")
    group.addoption(
        "--mvit-weights", default=None, metavar="FILE", help="Reference checkpoint, if it moved since export."
    )
    group.addoption("--mvit-threads", type=int, default=None, metavar="N", help="Runtime threads.")
    group.addoption(
        "--mvit-device",
        default=None,
        metavar="ssh://user@host[:port]",
        help="Compute the artifacts' logits on this board.",
    )
    group.addoption("--mvit-identity", default=None, metavar="FILE", help="--mvit-device: ssh private key.")
    group.addoption(
        "--mvit-ssh-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="--mvit-device: extra ssh -o (repeatable).",
    )
    group.addoption(
        "--mvit-remote-python", default="python3", metavar="PATH", help="--mvit-device: the board's Python."
    )


def _device(config):
    """The connected --mvit-device, or None."""
    spec = config.getoption("--mvit-device", default=None)
    if not spec:
        return None
    from ..bench import connect

    return connect(
        spec,
        identity=config.getoption("--mvit-identity"),
        ssh_options=tuple(config.getoption("--mvit-ssh-option")),
        remote_python=config.getoption("--mvit-remote-python"),
    )


def pytest_configure(config):
    folders = config.getoption("--mvit-artifacts", default=[])
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise pytest.UsageError(
                f"--mvit-artifacts {folder}: no such folder — pass the --out folder of `mvit-deploy export`"
            )
        if not find_artifacts(folder):
            raise pytest.UsageError(
                f"--mvit-artifacts {folder}: no exported artifact in it ({', '.join(sorted(artifact_suffixes()))}) "
                "— export into it first: `mvit-deploy export --target ... --out DIR`"
            )
    try:
        _device(config)
    except MvitDeployError as e:
        raise pytest.UsageError(f"--mvit-device: {e.one_line()}") from None
    n = config.getoption("--mvit-n", default=None)
    if n is not None and n < 1:
        raise pytest.UsageError(f"--mvit-n {n}: use a positive number of images, e.g. --mvit-n 8")


def pytest_sessionstart(session):
    """``pytest --mvit-artifacts out/`` runs the parity cases alone; name test paths too to run both
    (``pytest tests/ --mvit-artifacts out/``)."""
    config = session.config
    typed = any(a == "--mvit-artifacts" or a.startswith("--mvit-artifacts=") for a in config.invocation_params.args)
    if (
        typed and config.args_source != pytest.Config.ArgsSource.ARGS
    ):  # (--mvit-artifacts in a config's addopts: the suite runs as usual)
        config.args = []


def _folders(config) -> list[Path]:
    return list(dict.fromkeys(Path(f).resolve() for f in config.getoption("--mvit-artifacts", default=[])))


def pytest_collection_modifyitems(session, config, items):
    for folder in _folders(config):
        try:
            nodeid = folder.relative_to(config.rootpath).as_posix()
        except ValueError:
            nodeid = folder.as_posix()
        items.extend(ArtifactFolder.from_parent(session, name=folder.name, path=folder, nodeid=nodeid).collect())


class ArtifactFolder(pytest.Collector):
    """An export folder: one parity case per artifact in it."""

    def collect(self):
        return [ParityItem.from_parent(self, name=p.name, path=p) for p in find_artifacts(self.path)]


class ParityItem(pytest.Item):
    """One artifact's parity against PyTorch, as a test case."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.artifact = self.path

    def runtest(self):
        opt = self.config.getoption
        try:
            report = assert_parity(
                self.artifact,
                opt("--mvit-images"),
                opt("--mvit-n"),
                opt("--mvit-weights"),
                opt("--mvit-threads"),
                _device(self.config),
            )
        except NotOnThisDevice as e:
            pytest.skip(e.one_line())
        except ParityFailed as e:
            self._record(e.report)
            raise
        except MvitDeployError as e:  # an unreadable artifact or manifest, a missing reference: one line
            raise pytest.fail.Exception(f"{self.artifact.name}: {e.one_line()}", pytrace=False) from None
        self._record(report)

    def _record(self, report) -> None:
        self.user_properties.append(("runtime", report.runtime))
        self.user_properties.append(("images", report.n_images))
        if report.device:
            d = report.device
            self.user_properties += [
                ("device", d["name"]),
                ("device.machine", d["machine"]),
                ("device.cpu", d["cpu"]),
                ("device.emulated", d.get("emulated") or "no"),
            ]
            if report.device_vs_host:
                self.user_properties.append(("device_vs_host.max_rel", f"{report.device_vs_host['max_rel']:.3g}"))
        for b in report.bounds:
            self.user_properties.append(
                (
                    f"{b['metric']} {b['op']} {b['value']:g}",
                    f"{b['measured']:.6g} ({'pass' if b['passed'] else 'FAIL'})",
                )
            )

    def repr_failure(self, excinfo):
        """A verdict or a broken artifact in its own lines; anything else (a bug of ours or of a runtime) in one line
        too, with pytest's traceback only when asked for (``--tb=long`` or ``--tb=native``)."""
        if isinstance(excinfo.value, ParityFailed):
            return str(excinfo.value)
        if isinstance(excinfo.value, pytest.fail.Exception) or self.config.getoption("tbstyle") in ("long", "native"):
            return super().repr_failure(excinfo)
        message = " ".join(str(excinfo.value).split())
        return (
            f"{self.artifact.name}: internal error: {type(excinfo.value).__name__}: {message} — please report it; "
            "--tb=long shows the traceback"
        )

    def reportinfo(self):
        return self.artifact, None, f"parity of {self.artifact.name}"
