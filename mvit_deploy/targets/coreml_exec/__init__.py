"""A reference executor for Core ML ML programs, in numpy, so Core ML exports can be checked on Linux.

What fp16 emulation models: every value whose type in the program is fp16 is rounded to
float16 when an op produces it (weights are stored fp16 already), exactly as the program's
types say. Each op computes internally in float32 from those fp16 values — sums inside
conv / matmul / linear / reductions accumulate in float32. What it does not model: the
Neural Engine's or GPU's own accumulation width and op fusion (not public), the order of
summation inside a kernel, and transcendental approximations (exp, tanh) of the device.
So it bounds the rounding the program's types impose, not a specific chip.
"""

from __future__ import annotations

import functools
import inspect
from pathlib import Path

import numpy as np

from ...errors import MvitDeployError, UsageError
from .ops import OPS, VARIADIC, Unsupported
from .program import FLOAT16, Operation, Program, load_program, numpy_dtype


class UnsupportedOpError(MvitDeployError):
    """The program uses an op the executor does not implement: never skipped, never passed (exit 1: unverified)."""

    exit_code = 1


@functools.cache
def _parameters(fn) -> frozenset[str]:
    return frozenset(inspect.signature(fn).parameters)


class InputShapeError(UsageError):
    """An input outside the shapes the program declares (fixed, RangeDim or EnumeratedShapes): exit 2, a usage error."""

    exit_code = 2


class ExecutorError(MvitDeployError):
    """The executor itself failed on an op it claims to implement: a defect, never a verdict (exit 3: internal)."""

    exit_code = 3


class MILExecutor:
    """Runs the ``main`` function of an ``.mlpackage`` op by op."""

    def __init__(self, package: str | Path):
        self.program: Program = load_program(package)
        unknown = [o for o in self.program.operations if o.type not in OPS]
        if unknown:
            o = unknown[0]
            raise UnsupportedOpError(
                f"Core ML op '{o.type}' ({o.location}) is not implemented by the reference executor",
                "run this model on macOS, or add the op to mvit_deploy/targets/coreml_exec/ops.py",
            )
        self._constants = self._fold_constants()

    @property
    def input_names(self) -> list[str]:
        return [i.name for i in self.program.inputs]

    def _fold_constants(self) -> dict[str, object]:
        """Evaluate const and constexpr_* ops once, at load (as Core ML decompresses at load time)."""
        env: dict[str, object] = {}
        for o in self.program.operations:
            if o.type == "const" or o.type.startswith("constexpr_"):
                self._execute(o, env)
        return env

    def _resolve(self, o: Operation, env: dict) -> dict:
        kwargs = {}
        for name, bindings in o.inputs.items():
            vals = []
            for kind, v in bindings:
                if kind == "ref":
                    if v not in env:
                        raise MvitDeployError(
                            f"{o.location} reads '{v}', which no earlier op produced", "the program is malformed"
                        )
                    v = env[v]
                if isinstance(v, np.ndarray) and v.dtype == np.float16:
                    v = v.astype(np.float32)  # compute in fp32 from exactly-represented fp16 values
                vals.append(v)
            kwargs[name] = vals if name in VARIADIC else vals[0]
        kwargs.update({k: v for k, v in o.attributes.items() if k not in kwargs})
        return kwargs

    def _execute(self, o: Operation, env: dict) -> None:
        fn = OPS[o.type]
        kwargs = self._resolve(o, env)
        unknown = sorted(set(kwargs) - _parameters(fn))
        if unknown:
            raise UnsupportedOpError(
                f"Core ML op '{o.type}' ({o.location}) has parameter(s) {unknown}, which the reference executor does "
                "not implement",
                "run this model on macOS, or extend mvit_deploy/targets/coreml_exec/ops.py",
            )
        try:
            result = fn(**kwargs)
        except MvitDeployError:
            raise
        except Unsupported as e:  # an attribute combination the executor does not implement: refused by name
            raise UnsupportedOpError(
                f"Core ML op '{o.type}' ({o.location}): {e}, which the reference executor does not implement",
                "run this model on macOS, or extend mvit_deploy/targets/coreml_exec/ops.py",
            ) from None
        except Exception as e:  # a defect of the executor: name where
            raise ExecutorError(
                f"Core ML op '{o.type}' ({o.location}) failed in the reference executor: {type(e).__name__}: {e}",
                "report it with the model",
            ) from e
        results = result if isinstance(result, tuple) else (result,)
        for (name, dtype), value in zip(o.outputs, results, strict=False):
            if dtype is not None and isinstance(value, (np.ndarray, np.generic, float, int)):
                value = np.asarray(value).astype(numpy_dtype(dtype), copy=False)
            env[name] = value

    def run(self, inputs: dict[str, np.ndarray], capture: list[str] | str | None = None) -> tuple[dict, dict]:
        """Returns (outputs by name, captured intermediates by name).

        ``capture``: a list of value names, or "all" for every value the program computes.
        """
        env = dict(self._constants)
        for spec in self.program.inputs:
            if spec.name not in inputs:
                raise MvitDeployError(f"missing input '{spec.name}'", f"pass {self.input_names}")
            x = np.asarray(inputs[spec.name])
            refusal = spec.refusal(x.shape)
            if refusal:
                raise InputShapeError(refusal, "resize the input to a shape the model declares")
            env[spec.name] = x.astype(numpy_dtype(spec.data_type))
        for o in self.program.operations:
            if o.outputs and o.outputs[0][0] in self._constants:
                continue
            self._execute(o, env)
        outputs = {name: env[name] for name in self.program.outputs}
        if capture == "all":
            captured = {k: v for k, v in env.items() if k not in self._constants}
        else:
            captured = {k: env[k] for k in (capture or [])}
        return outputs, captured

    def value_names(self) -> list[str]:
        """Every non-constant value the program computes, in execution order."""
        return [
            name for o in self.program.operations if o.outputs[0][0] not in self._constants for name, _ in o.outputs
        ]


__all__ = ["FLOAT16", "ExecutorError", "InputShapeError", "MILExecutor", "UnsupportedOpError"]
