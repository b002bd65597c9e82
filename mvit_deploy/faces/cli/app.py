"""The ``mvit-deploy`` app: the command group, its error contract (one line, an exit code), shared options."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager

import click

from ... import __version__
from ...errors import MvitDeployError, UsageError, at_least
from ...models.config import MAX_INPUT_SIZE, MODELS, pretrained_names


class _Group(click.Group):
    """Ends every command with the exit-code table of ``main``'s help: one line on stderr, never a traceback."""

    def parse_args(self, ctx, args):
        try:
            return super().parse_args(ctx, args)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as e:
            _fail(f"{e.format_message()} — see `mvit-deploy --help`", 2)

    def invoke(self, ctx):
        from ...artifact import interruptible

        try:
            with interruptible(), _watched_stdout():  # SIGTERM unwinds like Ctrl-C: staged writes leave nothing
                try:
                    result = super().invoke(ctx)
                except SystemExit:
                    sys.stdout.flush()  # a verdict's table (exit 1) must reach stdout too, or say it did not
                    raise
                sys.stdout.flush()
                return result
        except MvitDeployError as e:
            interrupt = _interrupt_in_chain(e)
            if interrupt is not None:  # an error raised while a Ctrl-C unwound is the Ctrl-C
                _interrupted(interrupt)
            _fail(e.one_line(), e.exit_code)
        except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (artifact.Terminated)
            _interrupted(e)
        except click.exceptions.Exit:
            raise
        except click.ClickException as e:  # click's own parsing: unknown option, not an integer, ...
            where = e.ctx.command_path if getattr(e, "ctx", None) else "mvit-deploy"
            _fail(f"{e.format_message()} — see `{where} --help`", 2)
        except BrokenPipeError:
            raise  # `| head`: click closes quietly
        except Exception as e:
            interrupt = _interrupt_in_chain(e)
            if interrupt is not None:  # a converter wrapped the Ctrl-C (torch.export raises TorchExportError from it)
                _interrupted(interrupt)
            if isinstance(e, OSError):
                _file_system_refused(e)
            _fail(f"internal error: {type(e).__name__}: {e} — please report it; {_write_crash_log()}", 3)


def _interrupt_in_chain(e: BaseException) -> KeyboardInterrupt | None:
    """The Ctrl-C (or SIGTERM) an exception was raised from or while handling, if any."""
    todo, seen = [e], set()
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        if isinstance(e, KeyboardInterrupt):
            return e
        seen.add(id(e))
        todo += [e.__cause__, e.__context__]
    return None


class _Stdout:
    """``sys.stdout`` while a command runs: a write or flush that fails (a full disk, ``> /dev/full``) is marked as
    stdout's, so the error names stdout rather than being an internal error."""

    def __init__(self, stream):
        self._stream = stream

    def __getattr__(self, name):
        return getattr(self._stream, name)

    def _marked(self, method, *args):
        try:
            return getattr(self._stream, method)(*args)
        except OSError as e:
            e.stdout = True
            raise

    def write(self, text):
        return self._marked("write", text)

    def writelines(self, lines):
        return self._marked("writelines", lines)

    def flush(self):
        return self._marked("flush")


@contextmanager
def _watched_stdout():
    stream = sys.stdout
    sys.stdout = _Stdout(stream)
    try:
        yield
    finally:
        sys.stdout = stream


def _file_system_refused(e: OSError) -> None:
    """Exit 2 in one line for an OSError the user can fix: stdout that cannot be written, or a path the file
    system refused (full, read-only, no permission, a name too long); return for anything else (a bug)."""
    import os

    from ...artifact import path_error

    if getattr(e, "stdout", False):
        try:  # the output is lost: fd 1 -> /dev/null, so the interpreter's last flush prints no second error
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):
            pass
        _fail(
            f"cannot write to stdout ({e.strerror or os.strerror(e.errno or 0)})",
            2,
            "redirect it to a file system with free space, or to /dev/null",
        )
    error = path_error(e)
    if error is not None:
        _fail(error.one_line(), error.exit_code)


def _interrupted(e: KeyboardInterrupt):
    click.echo("interrupted", err=True)
    sys.exit(128 + getattr(e, "signum", 2))


def _fail(message: str, code: int, fix: str | None = None):
    message = f"{message} — {fix}" if fix else message
    click.secho("error: " + " ".join(message.split()), err=True, fg="red")
    sys.exit(code)


def _write_crash_log() -> str:
    """Write the current exception's traceback to a log file; say where, or why not."""
    import os
    import platform
    import tempfile
    import traceback
    from pathlib import Path

    log = Path(tempfile.gettempdir()) / f"mvit-deploy-{os.getpid()}.log"
    try:
        log.write_text(
            f"mvit-deploy {__version__}, Python {platform.python_version()}, {platform.platform()}\nargv: "
            f"{sys.argv}\n\n{traceback.format_exc()}"
        )
    except OSError as e:
        return f"no traceback log: cannot write {log} ({e.strerror})"
    return f"full traceback in {log}"


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mvit-deploy")
def main():
    """Deploy MobileViT to ONNX, Core ML and LiteRT, checked against PyTorch.

    \b
    Exit codes, the same for every command:
      0  ok
      1  a bound or check failed (parity, eval, export's parity, bench --baseline)
      2  usage or input error: bad flag, file or folder (one line names it and the fix)
      3  internal error: one line, and the traceback in a log file to report
      130/143  interrupted (Ctrl-C / SIGTERM); nothing partial is left behind

    \b
    Where each command runs:
      a board with only mvit-deploy[device] (no torch): bench, models
      the host (mvit-deploy[export], torch): export, parity, eval, predict, quant-report,
        ane-check, report; parity --device ssh:// runs the artifact on the board from here
    """
    _quiet_converters()


def _quiet_converters() -> None:
    """Converters narrate through warnings and loggers; the CLI shows its own progress instead."""
    import logging
    import os
    import re
    import warnings

    from ...targets import TARGETS

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault(
        "TORCH_LOGS", "-all"
    )  # torch's own log handler (set up at import) ignores the logger levels below
    for name in dict.fromkeys(("torch", "torchao", *(n for t in TARGETS.values() for n in t.noisy_loggers))):
        logging.getLogger(name).setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", module=rf"{re.escape(name)}(\.|$)")  # only the named converters' warnings
    # torch.export's pytree, deep-copied by the exporters, warns through copyreg (so no module filter catches it)
    warnings.filterwarnings(
        "ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning
    )


def _sizes(value: str | None) -> list[int] | None:
    """``--input-size 256`` or ``256,320,384`` (Core ML: EnumeratedShapes)."""
    if value is None:
        return None
    try:
        sizes = [int(v) for v in value.split(",")]
    except ValueError:
        raise UsageError(
            f"--input-size {value!r} is not a size or a comma-separated list of sizes",
            "use e.g. --input-size 256, or 256,320 for Core ML",
        ) from None
    return sizes


def _at_least(minimum: int, example: int):
    """A click callback refusing a value below ``minimum`` while the flags are parsed, before any work."""

    def check(ctx, param, value):
        at_least(param.opts[0], value, minimum, example)
        return value

    return check


def _echo_json(data, indent: int | None = 2) -> None:
    """JSON has no NaN or Infinity: a non-finite number reaching this point is a bug (exit 3), never invalid output."""
    click.echo(json.dumps(data, indent=indent, allow_nan=False))


model_option = click.option(
    "--model", "model_name", type=click.Choice(list(MODELS)), default="mobilevit_xxs", show_default=True
)
weights_option = click.option(
    "--weights",
    type=click.Path(path_type=str),
    default=None,
    help="Local checkpoint: timm, Hugging Face or ml-cvnets layout.",
)
pretrained_option = click.option(
    "--pretrained",
    type=click.Choice(pretrained_names()),
    default=None,
    help="Named weights: fashion = our Fashion-MNIST model (shipped, 64 px; xxs, s, mobilevitv2_050); hf / timm / "
    "timm-in22k(-384) = published ImageNet weights (network or a filled hub cache).",
)
num_classes_option = click.option(
    "--num-classes",
    type=int,
    default=None,
    callback=_at_least(1, 10),
    help="Default: the checkpoint's head (1000 for the fixture).",
)
threads_option = click.option("--threads", type=int, default=2, show_default=True, callback=_at_least(1, 2))
reference_weights_option = click.option(
    "--weights",
    type=click.Path(exists=True, dir_okay=False, path_type=str),
    default=None,
    help="Reference checkpoint, if it moved since export.",
)


def ssh_options(f):
    """``--identity`` and ``--ssh-option``: how parity and bench reach an ssh device."""
    f = click.option("--ssh-option", "ssh_options", multiple=True, help="ssh: extra -o KEY=VALUE (repeatable).")(f)
    return click.option(
        "--identity", type=click.Path(dir_okay=False, path_type=str), default=None, help="ssh: private key file."
    )(f)


INPUT_SIZE_HELP = f"Multiple of 64 up to {MAX_INPUT_SIZE} (memory grows with the square of the pixel count)"


def _target_names() -> list[str]:
    from ...targets import TARGETS

    return list(TARGETS)


def _precision_help() -> str:
    from ...targets import TARGETS

    def word(t, p):
        notes = [n for n in (t.precision_notes.get(p), "default" if p == t.default_precision else None) if n]
        return p + (f" ({', '.join(notes)})" if notes else "")

    each = "; ".join(f"{t.name}: " + ", ".join(word(t, p) for p in t.precisions) for t in TARGETS.values())
    return f"{each}. Quantized precisions calibrate on --calib images."


def _target_options(kind: str):
    """The flags the targets add to ``export`` or ``bench`` (``Target.export_options`` / ``bench_options``)."""
    from ...targets import options_of

    def decorate(f):
        for flag, (opt, targets) in reversed(options_of(kind).items()):
            names = ", ".join(t.name for t in targets)
            default = f" (default {opt.default})" if opt.default is not None else ""
            f = click.option(
                flag, opt.field, type=click.Choice(opt.choices), default=None, help=f"{names}: {opt.help}{default}"
            )(f)
        return f

    return decorate


def _adb_help() -> str:
    from ...targets import TARGETS

    return (
        "adb: the runtime's Android benchmark binary, repeatable ("
        + "; ".join(f"{t.suffix}: {t.adb.where}" for t in TARGETS.values() if t.adb)
        + ")."
    )
