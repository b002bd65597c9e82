"""Read an ML program (``.mlpackage``): the MIL protobuf plus its weight blob, as numpy.

Uses only coremltools' protobuf classes (they work on Linux); the package's layout is read by
``device/runtimes/mlpackage.py`` (item paths confined to the package) and its weight file by ``blobs.py``
(every offset checked against the file's size).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...device.files import read_bytes
from ...device.runtimes.mlpackage import REEXPORT, inside, root_model
from ...errors import UsageError
from .blobs import SUB_BYTE, WeightFile, unpack_sub_byte

SPEC_MAX_BYTES = (2 << 30) - 1  # protobuf parses no larger message

# MIL DataType enum value -> numpy dtype. Sub-byte ints are widened to (u)int8.
_NUMPY = {
    1: np.bool_,
    2: np.object_,
    10: np.float16,
    11: np.float32,
    12: np.float64,
    21: np.int8,
    22: np.int16,
    23: np.int32,
    24: np.int64,
    25: np.int8,
    31: np.uint8,
    32: np.uint16,
    33: np.uint32,
    34: np.uint64,
    35: np.uint8,
    36: np.uint8,
    37: np.uint8,
    38: np.uint8,
    39: np.uint8,
}
FLOAT16 = 10  # MIL data type of fp16 tensors (the executor casts its inputs to it)


def numpy_dtype(data_type: int):
    try:
        return _NUMPY[data_type]
    except KeyError:
        raise UsageError(
            f"ML program uses data type {data_type}, which the reference executor does not know",
            "export fp16/fp32/int8",
        ) from None


@dataclass
class Operation:
    index: int
    type: str
    inputs: dict[str, list]  # name -> list of ("ref", var name) | ("value", ndarray / python value)
    outputs: list[tuple[str, int | None]]  # (name, MIL data type of a tensor output, else None)
    attributes: dict = field(default_factory=dict)
    shapes: list[tuple[int | None, ...] | None] = field(
        default_factory=list
    )  # per output: dims (None: symbolic), None: not a tensor

    @property
    def location(self) -> str:
        return f"op #{self.index} producing '{self.outputs[0][0]}'" if self.outputs else f"op #{self.index}"


@dataclass
class Input:
    """A function input: its declared shape (None where symbolic) and the shapes the model accepts."""

    name: str
    data_type: int
    shape: tuple[int | None, ...]
    ranges: list[tuple[int, int]] | None = None  # per dimension (lower, upper); upper -1 = unbounded
    enumerated: list[tuple[int, ...]] | None = None  # EnumeratedShapes

    def refusal(self, shape: tuple[int, ...]) -> str | None:
        """Why an input of ``shape`` is outside what the model declares (None: accepted)."""
        shape = tuple(int(d) for d in shape)
        if len(shape) != len(self.shape):
            return (
                f"input '{self.name}' has rank {len(shape)} (shape {shape}), the program wants rank {len(self.shape)}"
            )
        if self.enumerated:
            if shape not in self.enumerated:
                return (
                    f"input '{self.name}' has shape {shape}, the model accepts only the enumerated shapes "
                    f"{self.enumerated}"
                )
            return None
        if self.ranges:
            for i, (d, (lo, hi)) in enumerate(zip(shape, self.ranges, strict=False)):
                if d < lo or (hi != -1 and d > hi):
                    span = f"[{lo}, {'unbounded' if hi == -1 else hi}]"
                    return (
                        f"input '{self.name}' has shape {shape}: dimension {i} = {d} is outside the declared range "
                        f"{span}"
                    )
            return None
        for d, want in zip(shape, self.shape, strict=True):
            if want is not None and d != want:
                return (
                    f"input '{self.name}' has shape {shape}, the program wants "
                    f"{tuple('?' if w is None else w for w in self.shape)}"
                )
        return None


def _flexibility(description_input) -> tuple[list | None, list | None]:
    """(ranges, enumerated shapes) from an input's feature description (multi-array or image)."""
    kind = description_input.type.WhichOneof("Type")
    if kind == "multiArrayType":
        t = description_input.type.multiArrayType
        which = t.WhichOneof("ShapeFlexibility")
        if which == "shapeRange":
            return [(r.lowerBound, r.upperBound) for r in t.shapeRange.sizeRanges], None
        if which == "enumeratedShapes":
            return None, [tuple(s.shape) for s in t.enumeratedShapes.shapes]
    if kind == "imageType":
        t = description_input.type.imageType
        channels = 1 if t.colorSpace == 10 else 3  # GRAYSCALE = 10
        which = t.WhichOneof("SizeFlexibility")
        if which == "imageSizeRange":
            h, w = t.imageSizeRange.heightRange, t.imageSizeRange.widthRange
            return [(1, 1), (channels, channels), (h.lowerBound, h.upperBound), (w.lowerBound, w.upperBound)], None
        if which == "enumeratedSizes":
            return None, [(1, channels, s.height, s.width) for s in t.enumeratedSizes.sizes]
    return None, None


@dataclass
class Program:
    opset: str
    inputs: list[Input]
    outputs: list[str]
    operations: list[Operation]
    spec: object  # the Model protobuf (description, metadata, classifier info)


class _Values:
    """Decodes protobuf Values; blobs come from the package's weight files (blobs.WeightFile, every offset checked)."""

    def __init__(self, model_dir: Path, data_dir: Path):
        self.model_dir, self.data_dir = model_dir, data_dir  # @model_path; the folder every file must stay under
        self._files: dict[str, WeightFile] = {}

    def _file(self, file_name: str) -> WeightFile:
        if file_name not in self._files:
            if not file_name.startswith("@model_path/"):
                raise UsageError(f"the ML program reads weights from {file_name!r}, outside the package", REEXPORT)
            # @model_path is the spec's folder; relative to Data, so that a refusal shows the name's own ../
            relative = self.model_dir.relative_to(self.data_dir.resolve()) / file_name.removeprefix("@model_path/")
            path = inside(self.data_dir, str(relative), f"the ML program's weight file name {file_name!r}")
            if not path.exists():
                raise UsageError(f"weight file {path} is missing from the package", REEXPORT)
            self._files[file_name] = WeightFile(path)
        return self._files[file_name]

    def decode(self, value):
        kind = value.type.WhichOneof("type")
        if kind == "listType":
            return [self.decode(v) for v in value.immediateValue.list.values]
        if kind == "dictionaryType":
            return {self.decode(e.key): self.decode(e.value) for e in value.immediateValue.dictionary.values}
        ttype = value.type.tensorType
        shape = tuple(d.constant.size for d in ttype.dimensions)
        dtype = numpy_dtype(ttype.dataType)
        if value.WhichOneof("value") == "blobFileValue":
            blob = value.blobFileValue
            return self._file(blob.fileName).read(blob.offset, ttype.dataType, shape)
        return _immediate(value.immediateValue.tensor, ttype.dataType, dtype, shape)


def _immediate(tensor, data_type: int, dtype, shape: tuple[int, ...]) -> np.ndarray:
    """A tensor written into the program itself; as many values as its shape holds, or the spec is damaged."""
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    field_name = tensor.WhichOneof("value")
    if field_name is None:
        if count:  # an empty tensor has no values; a shape that claims some is not to be allocated from nothing
            raise UsageError(f"the ML program holds a {shape} tensor without values", REEXPORT)
        return np.zeros(shape, dtype)
    values = getattr(tensor, field_name).values
    if field_name == "bytes":
        if data_type in SUB_BYTE:
            if len(values) * 8 < count * SUB_BYTE[data_type][0]:
                raise UsageError(f"the ML program holds a {shape} tensor with too few packed bytes", REEXPORT)
            return unpack_sub_byte(values, data_type, shape)
        if len(values) % np.dtype(dtype).itemsize:
            raise UsageError(f"the ML program holds a {shape} tensor with a partial value", REEXPORT)
        arr = np.frombuffer(values, dtype=dtype).copy()
    elif field_name == "strings":
        arr = np.array(list(values), dtype=object)
    else:
        arr = np.array(list(values)).astype(dtype)
    if shape and arr.size != count:
        raise UsageError(f"the ML program holds a {shape} tensor with {arr.size} values", REEXPORT)
    return arr.reshape(shape) if shape else (arr.reshape(()) if arr.size == 1 else arr)


def _dims(tensor_type) -> tuple[int | None, ...]:
    return tuple(d.constant.size if d.WhichOneof("dimension") == "constant" else None for d in tensor_type.dimensions)


def read_spec(model_file: Path):
    """The Model protobuf in ``model_file`` (read through the one door: a regular file, under protobuf's 2 GB)."""
    from coremltools.proto import Model_pb2
    from google.protobuf.message import DecodeError

    data = read_bytes(model_file, "Core ML model spec", REEXPORT, SPEC_MAX_BYTES)
    spec = Model_pb2.Model()
    try:
        spec.ParseFromString(data)
    except (DecodeError, RecursionError) as e:  # cut short or not a spec at all: the protobuf's own words
        raise UsageError(f"Core ML model spec {model_file} is damaged ({str(e)[:200]})", REEXPORT) from None
    return spec


def _block(spec, package: Path, function: str):
    """(the function, its block) the executor runs; a spec cut short at a field boundary parses, and lacks them."""
    kind = spec.WhichOneof("Type")
    if kind != "mlProgram":
        raise UsageError(f"{package} holds a {kind} model, not an ML program", "export with convert_to='mlprogram'")
    if function not in spec.mlProgram.functions:
        raise UsageError(f"the ML program in {package} has no function {function!r} (damaged?)", REEXPORT)
    fn = spec.mlProgram.functions[function]
    if fn.opset not in fn.block_specializations:
        raise UsageError(f"the ML program in {package} has no {fn.opset!r} block for {function!r} (damaged?)", REEXPORT)
    return fn, fn.block_specializations[fn.opset]


def load_program(package: str | Path, function: str = "main") -> Program:
    package = Path(package)
    model_file = root_model(package)  # Manifest.json read and every item path confined to the package
    spec = read_spec(model_file)
    fn, block = _block(spec, package, function)
    values = _Values(model_file.parent, package / "Data")
    described = {d.name: d for d in spec.description.input}
    inputs = []
    for i in fn.inputs:
        dims = _dims(i.type.tensorType)
        ranges, enumerated = _flexibility(described[i.name]) if i.name in described else (None, None)
        inputs.append(Input(i.name, i.type.tensorType.dataType, dims, ranges, enumerated))
    ops = []
    for index, op in enumerate(block.operations):
        bound = {}
        for name, arg in op.inputs.items():
            bound[name] = [
                ("ref", b.name) if b.WhichOneof("binding") == "name" else ("value", values.decode(b.value))
                for b in arg.arguments
            ]
        outputs = [
            (o.name, o.type.tensorType.dataType if o.type.WhichOneof("type") == "tensorType" else None)
            for o in op.outputs
        ]
        shapes = [_dims(o.type.tensorType) if o.type.WhichOneof("type") == "tensorType" else None for o in op.outputs]
        attributes = {k: values.decode(v) for k, v in op.attributes.items() if k != "name"}
        ops.append(Operation(index, op.type, bound, outputs, attributes, shapes))
    produced = {i.name for i in inputs} | {name for o in ops for name, _ in o.outputs}
    missing = [name for name in block.outputs if name not in produced]
    if missing:
        raise UsageError(
            f"the ML program in {package} returns {missing[0]!r}, which no op produces (damaged?)", REEXPORT
        )
    return Program(fn.opset, inputs, list(block.outputs), ops, spec)
