"""The weight file of an ML program (``weights/weight.bin``), read with every offset and size checked first.

Layout (MIL blob storage v2, coremltools ``mlmodel/src/MILBlob/Blob/StorageFormat.hpp``): a 64-byte header
(uint32 count, uint32 version = 2, reserved), then per blob a 64-byte metadata record (uint32 sentinel 0xDEADBEEF,
uint32 blob data type, uint64 size in bytes, uint64 offset of the data, uint64 unused bits of a sub-byte type,
reserved) and the data. The program's ``blobFileValue`` points at a metadata record; a damaged or truncated file
points past its end, at a record that is not one, or at data of another type or size than the program declares:
each is refused naming the blob, before anything is allocated for it.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from ...device.files import read_bytes
from ...device.runtimes.mlpackage import REEXPORT
from ...errors import UsageError

MAX_BYTES = 2 << 30  # protobuf's own limit for a model; MobileViT-v2 2.0 in fp32 is 74 MB
HEADER = struct.Struct("<II")  # count, version
METADATA = struct.Struct("<IIQQQ")  # sentinel, blob data type, size in bytes, data offset, padding bits
RECORD = 64  # the header and each metadata record take 64 bytes
SENTINEL = 0xDEADBEEF

# MIL DataType -> (blob data type, numpy dtype of a byte-aligned element); sub-byte types: see SUB_BYTE
BLOB_TYPES = {
    10: (1, np.float16),
    11: (2, np.float32),
    31: (3, np.uint8),
    21: (4, np.int8),
    22: (6, np.int16),
    32: (7, np.uint16),
    25: (8, None),
    37: (9, None),
    36: (10, None),
    35: (11, None),
    39: (12, None),
    38: (13, None),
    23: (14, np.int32),
    33: (15, np.uint32),
}
SUB_BYTE = {
    25: (4, True),
    35: (4, False),
    36: (2, False),
    37: (1, False),
    38: (6, False),
    39: (3, False),
}  # bits, signed


def unpack_sub_byte(raw: bytes, data_type: int, shape: tuple[int, ...]) -> np.ndarray:
    """int4 / uint1..uint6 values: packed least-significant bit first, element after element."""
    nbits, signed = SUB_BYTE[data_type]
    count = int(np.prod(shape)) if shape else 1
    bits = np.unpackbits(np.frombuffer(raw, np.uint8), bitorder="little")[: nbits * count].reshape(count, nbits)
    values = (bits.astype(np.int16) << np.arange(nbits, dtype=np.int16)).sum(axis=1)
    if signed:
        values = np.where(values >= 1 << (nbits - 1), values - (1 << nbits), values)
    return values.astype(np.int8 if signed else np.uint8).reshape(shape)


class WeightFile:
    """One weight file, read once through the one door for a user's file (a regular file, size-capped)."""

    def __init__(self, path: Path):
        self.path = path
        self.data = read_bytes(path, "Core ML weight file", REEXPORT, MAX_BYTES)
        if len(self.data) < RECORD:
            self._refuse(f"holds {len(self.data)} bytes, fewer than its {RECORD}-byte header")
        _, version = HEADER.unpack_from(self.data)
        if version != 2:
            self._refuse(f"is not MIL blob storage version 2 (its header says version {version})")

    def _refuse(self, problem: str):
        raise UsageError(f"Core ML weight file {self.path} {problem}", REEXPORT)

    def read(self, offset: int, data_type: int, shape: tuple[int, ...]) -> np.ndarray:
        """The tensor of MIL ``data_type`` and ``shape`` whose metadata record is at byte ``offset``."""
        size = len(self.data)
        if data_type not in BLOB_TYPES:
            raise UsageError(f"blob of data type {data_type} is not readable here", "export fp16/fp32/int8 weights")
        if not RECORD <= offset <= size - RECORD:
            self._refuse(f"holds {size:,} bytes; the program's blob at byte {offset:,} is past its end (truncated?)")
        sentinel, blob_type, nbytes, start, padding = METADATA.unpack_from(self.data, offset)
        where = f"the blob at byte {offset:,}"
        if sentinel != SENTINEL:
            self._refuse(f"is damaged: {where} has no blob record (sentinel {sentinel:#x}, not {SENTINEL:#x})")
        if start < offset + RECORD or start + nbytes > size:
            self._refuse(
                f"holds {size:,} bytes; {where} says its data is bytes {start:,}..{start + nbytes:,} (truncated?)"
            )
        want, dtype = BLOB_TYPES[data_type]
        if blob_type != want:
            self._refuse(f"is damaged: {where} holds blob type {blob_type}, the program reads type {want} there")
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        raw = memoryview(self.data)[start : start + nbytes]
        if dtype is None:
            nbits = SUB_BYTE[data_type][0]
            if padding >= 8 or nbytes * 8 - padding != count * nbits:
                self._refuse(
                    f"is damaged: {where} holds {nbytes * 8 - padding} bits, the program's {shape} needs "
                    f"{count * nbits}"
                )
            return unpack_sub_byte(raw, data_type, shape)
        if nbytes != count * np.dtype(dtype).itemsize:
            self._refuse(
                f"is damaged: {where} holds {nbytes:,} bytes, the program's {np.dtype(dtype).name} "
                f"{shape} needs {count * np.dtype(dtype).itemsize:,}"
            )
        return np.frombuffer(raw, dtype).reshape(shape).copy()  # a copy the executor owns (the file's bytes are freed)
