"""Read an ML program (``.mlpackage``): the MIL protobuf plus its weight blob, as numpy.

Uses only coremltools' protobuf classes and blob reader, both of which work on Linux.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...errors import UsageError

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
# DataType -> _BlobStorageReader method
_BLOB_READERS = {
    10: "read_fp16_data",
    11: "read_float_data",
    21: "read_int8_data",
    22: "read_int16_data",
    23: "read_int32_data",
    25: "read_int4_data",
    31: "read_uint8_data",
    32: "read_uint16_data",
    33: "read_uint32_data",
    35: "read_uint4_data",
    36: "read_uint2_data",
    37: "read_uint1_data",
    38: "read_uint6_data",
    39: "read_uint3_data",
}
_SUB_BYTE = {
    25: (4, True),
    35: (4, False),
    36: (2, False),
    37: (1, False),
    38: (6, False),
    39: (3, False),
}  # bits, signed
FLOAT16 = 10  # MIL data type of fp16 tensors (the executor casts its inputs to it)


def _unpack_sub_byte(raw: bytes, data_type: int, shape: tuple[int, ...]) -> np.ndarray:
    """Immediate int4 / uint1..uint6 values: packed least-significant bit first, element after element."""
    nbits, signed = _SUB_BYTE[data_type]
    count = int(np.prod(shape)) if shape else 1
    bits = np.unpackbits(np.frombuffer(raw, np.uint8), bitorder="little")[: nbits * count].reshape(count, nbits)
    values = (bits.astype(np.int16) << np.arange(nbits, dtype=np.int16)).sum(axis=1)
    if signed:
        values = np.where(values >= 1 << (nbits - 1), values - (1 << nbits), values)
    return values.astype(np.int8 if signed else np.uint8).reshape(shape)


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
    """Decodes protobuf Values; blob reads go through coremltools' reader for the package's weight file."""

    def __init__(self, weights_dir: Path):
        self.weights_dir = weights_dir
        self._readers: dict[str, object] = {}

    def _reader(self, file_name: str):
        if file_name not in self._readers:
            from coremltools.libmilstoragepython import _BlobStorageReader

            path = self.weights_dir / file_name.replace("@model_path/weights/", "")
            if not path.exists():
                raise UsageError(f"weight file {path} is missing from the package", "re-export the .mlpackage")
            self._readers[file_name] = _BlobStorageReader(str(path))
        return self._readers[file_name]

    def decode(self, value):
        kind = value.type.WhichOneof("type")
        if kind == "listType":
            return [self.decode(v) for v in value.immediateValue.list.values]
        if kind == "dictionaryType":
            return {self.decode(e.key): self.decode(e.value) for e in value.immediateValue.dictionary.values}
        ttype = value.type.tensorType
        shape = tuple(d.constant.size for d in ttype.dimensions)
        dtype = numpy_dtype(ttype.dataType)
        which = value.WhichOneof("value")
        if which == "blobFileValue":
            reader = self._reader(value.blobFileValue.fileName)
            method = _BLOB_READERS.get(ttype.dataType)
            if method is None:
                raise UsageError(
                    f"blob of data type {ttype.dataType} is not readable here", "export fp16/fp32/int8 weights"
                )
            raw = np.asarray(getattr(reader, method)(value.blobFileValue.offset))
            arr = raw.view(np.float16) if ttype.dataType == FLOAT16 else raw.astype(dtype, copy=False)
            return arr.reshape(shape)
        tensor = value.immediateValue.tensor
        field_name = tensor.WhichOneof("value")
        if field_name is None:
            return np.zeros(shape, dtype)
        values = getattr(tensor, field_name).values
        if field_name == "bytes":
            if ttype.dataType in _SUB_BYTE:
                return _unpack_sub_byte(values, ttype.dataType, shape)
            arr = np.frombuffer(values, dtype=dtype).copy()
        elif field_name == "strings":
            arr = np.array(list(values), dtype=object)
        else:
            arr = np.array(list(values)).astype(dtype)
        return arr.reshape(shape) if shape else (arr.reshape(()) if arr.size == 1 else arr)


def _dims(tensor_type) -> tuple[int | None, ...]:
    return tuple(d.constant.size if d.WhichOneof("dimension") == "constant" else None for d in tensor_type.dimensions)


def load_program(package: str | Path, function: str = "main") -> Program:
    import coremltools as ct

    package = Path(package)
    if not (package / "Manifest.json").exists():
        raise UsageError(
            f"{package} is not an .mlpackage", "pass the directory `mvit-deploy export --target coreml` wrote"
        )
    spec = ct.utils.load_spec(str(package))
    if spec.WhichOneof("Type") == "pipelineClassifier" or spec.WhichOneof("Type") != "mlProgram":
        raise UsageError(
            f"{package} holds a {spec.WhichOneof('Type')} model, not an ML program",
            "export with convert_to='mlprogram'",
        )
    fn = spec.mlProgram.functions[function]
    block = fn.block_specializations[fn.opset]
    values = _Values(package / "Data" / "com.apple.CoreML" / "weights")
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
    return Program(fn.opset, inputs, list(block.outputs), ops, spec)
