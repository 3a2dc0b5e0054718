"""A small safetensors reader and streaming writer over numpy, one tensor at a time.

Why not `safetensors.safe_open`: it needs torch for bf16 (numpy has no bf16), and
importing torch alone costs ~270 MB of RSS and ~2 s, more than a merge of one shard
needs. The format is simple (8-byte little-endian header length, a JSON header of
name -> dtype/shape/byte range, then the raw bytes), so reading a tensor is a seek and
a read into a fresh buffer: nothing is memory-mapped, so the process holds only the
tensor it is working on. Writing knows every tensor's size up front, writes the
header first and then streams the tensors in header order.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterable

import numpy as np

from subjectlm.errors import UserError

# safetensors dtype code -> bytes per element
ITEMSIZE = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1,
    "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1,
}
# The float formats we can decode to float32 and encode back (merge targets, --dtype).
FLOAT_DTYPES = ("F32", "F16", "BF16", "F64")
# config.json spelling of each code (transformers writes torch dtype names)
TORCH_NAMES = {"F32": "float32", "BF16": "bfloat16", "F16": "float16", "F64": "float64"}
_COPY_CHUNK = 16 << 20  # bytes per read when copying a tensor unchanged


class SafetensorsFormatError(UserError, ValueError):
    pass


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor lives: file, dtype code, shape and absolute byte range."""

    name: str
    file: Path
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.start


def read_header(path: str | Path) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """The tensors of one .safetensors file (by name) and its `__metadata__`."""
    path = Path(path)
    with open(path, "rb") as handle:
        raw = handle.read(8)
        if len(raw) != 8:
            raise SafetensorsFormatError(f"{path}: not a safetensors file (too short)")
        (length,) = struct.unpack("<Q", raw)
        size = path.stat().st_size
        if length > size - 8 or length > 100 << 20:
            raise SafetensorsFormatError(f"{path}: not a safetensors file (bad header length)")
        try:
            header = json.loads(handle.read(length))
        except ValueError as exc:
            raise SafetensorsFormatError(f"{path}: not a safetensors file ({exc})") from None
    base = 8 + length
    metadata = header.pop("__metadata__", None) or {}
    tensors = {}
    for name, entry in header.items():
        dtype, shape = entry["dtype"], tuple(int(d) for d in entry["shape"])
        begin, end = entry["data_offsets"]
        if dtype not in ITEMSIZE:
            raise SafetensorsFormatError(f"{path}: tensor {name}: unsupported dtype {dtype}")
        if end - begin != ITEMSIZE[dtype] * int(np.prod(shape, dtype=np.int64)) or base + end > size:
            raise SafetensorsFormatError(f"{path}: tensor {name}: byte range does not match its shape")
        tensors[name] = TensorInfo(name, path, dtype, shape, base + begin, base + end)
    return tensors, metadata


def read_bytes(info: TensorInfo) -> bytearray:
    buffer = bytearray(info.nbytes)
    with open(info.file, "rb") as handle:
        handle.seek(info.start)
        if handle.readinto(buffer) != info.nbytes:
            raise SafetensorsFormatError(f"{info.file}: tensor {info.name} is truncated")
    return buffer


def read_rows_float32(info: TensorInfo, first: int, stop: int) -> np.ndarray:
    """Rows first:stop (along the first axis) of a float tensor, decoded to a writable float32 array."""
    row_bytes = info.nbytes // info.shape[0] if info.shape and info.shape[0] else 0
    buffer = bytearray(row_bytes * (stop - first))
    with open(info.file, "rb") as handle:
        handle.seek(info.start + first * row_bytes)
        if handle.readinto(buffer) != len(buffer):
            raise SafetensorsFormatError(f"{info.file}: tensor {info.name} is truncated")
    array = decode_float32(buffer, info.dtype, (stop - first, *info.shape[1:]))
    return array if array.flags.writeable else array.copy()


def read_float32(info: TensorInfo) -> np.ndarray:
    """A float tensor decoded to a (writable) float32 array; bf16 widens exactly."""
    return decode_float32(read_bytes(info), info.dtype, info.shape)


def decode_float32(buffer: bytearray | bytes, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    if dtype == "F32":
        return np.frombuffer(buffer, dtype="<f4").reshape(shape)
    if dtype == "F16":
        return np.frombuffer(buffer, dtype="<f2").astype(np.float32).reshape(shape)
    if dtype == "BF16":
        # bf16 is the top half of a float32: shift the 16 bits into place.
        return (np.frombuffer(buffer, dtype="<u2").astype(np.uint32) << 16).view(np.float32).reshape(shape)
    if dtype == "F64":
        return np.frombuffer(buffer, dtype="<f8").astype(np.float32).reshape(shape)
    raise SafetensorsFormatError(f"cannot decode {dtype} as a float tensor")


def encode(array: np.ndarray, dtype: str) -> np.ndarray:
    """float32 array -> array whose bytes are `dtype` (round to nearest even, as torch does)."""
    array = np.ascontiguousarray(array, dtype=np.float32)
    if dtype == "F32":
        return array
    if dtype == "F16":
        return array.astype("<f2")
    if dtype == "F64":
        return array.astype("<f8")
    if dtype == "BF16":
        bits = array.view(np.uint32)
        rounded = ((bits + (0x7FFF + ((bits >> 16) & 1))) >> 16).astype(np.uint16)
        nan = np.isnan(array)
        if nan.any():  # keep NaN a (quiet) NaN instead of rounding it into infinity
            rounded[nan] = ((bits[nan] >> 16) | 0x0040).astype(np.uint16)
        return rounded
    raise SafetensorsFormatError(f"cannot encode float32 as {dtype}")


def _write_all(out: BinaryIO, data) -> None:
    """Write everything (an unbuffered file may write less than asked)."""
    view = memoryview(data).cast("B")
    while view:
        view = view[out.write(view):]


def copy_tensor(info: TensorInfo, out: BinaryIO) -> None:
    """Copy a tensor's bytes unchanged: in the kernel where it can (copy_file_range), else in bounded chunks.

    `out` must be unbuffered (its file position is the OS one)."""
    left = info.nbytes
    with open(info.file, "rb", buffering=0) as handle:
        if hasattr(os, "copy_file_range"):
            try:
                while left:
                    done = os.copy_file_range(handle.fileno(), out.fileno(), min(left, 1 << 30),
                                              info.start + info.nbytes - left)
                    if done == 0:
                        raise SafetensorsFormatError(f"{info.file}: tensor {info.name} is truncated")
                    left -= done
                return
            except OSError:  # not supported between these files: fall back to reading and writing
                pass
        handle.seek(info.start + info.nbytes - left)
        while left:
            chunk = handle.read(min(left, _COPY_CHUNK))
            if not chunk:
                raise SafetensorsFormatError(f"{info.file}: tensor {info.name} is truncated")
            _write_all(out, chunk)
            left -= len(chunk)


def same_bytes(a: TensorInfo, b: TensorInfo) -> bool:
    """Whether two stored tensors are bit-identical (compared in chunks)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    with open(a.file, "rb") as fa, open(b.file, "rb") as fb:
        fa.seek(a.start)
        fb.seek(b.start)
        left = a.nbytes
        while left:
            n = min(left, _COPY_CHUNK)
            if fa.read(n) != fb.read(n):
                return False
            left -= n
    return True


class ShardWriter:
    """Write one .safetensors file: declare every tensor first, then stream them in order.

    Tensors are laid out largest element size first (then by name), as safetensors
    itself does, so that every tensor starts aligned to its element size.
    """

    def __init__(self, path: str | Path, entries: Iterable[tuple[str, str, tuple[int, ...]]],
                 metadata: dict[str, str] | None = None):
        self.path = Path(path)
        ordered = sorted(entries, key=lambda e: (-ITEMSIZE[e[1]], e[0]))
        header: dict[str, object] = {"__metadata__": dict(metadata or {"format": "pt"})}
        offset = 0
        self.order: list[tuple[str, int]] = []
        for name, dtype, shape in ordered:
            nbytes = ITEMSIZE[dtype] * int(np.prod(shape, dtype=np.int64))
            header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
            self.order.append((name, nbytes))
            offset += nbytes
        self.data_size = offset
        text = json.dumps(header, separators=(",", ":")).encode()
        text += b" " * (-len(text) % 8)
        # Unbuffered: blocks are large, and copy_file_range writes at the OS file position.
        self._handle = open(self.path, "wb", buffering=0)
        _write_all(self._handle, struct.pack("<Q", len(text)) + text)
        self._next = 0

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.order]

    def write(self, name: str, data: TensorInfo | np.ndarray | Iterable[np.ndarray]) -> None:
        """Write the next tensor: a stored tensor to copy, or an array or blocks of it already in the declared dtype."""
        expected, nbytes = self.order[self._next]
        if name != expected:
            raise RuntimeError(f"{self.path}: wrote {name} where {expected} was due")
        if isinstance(data, TensorInfo):
            if data.nbytes != nbytes:
                raise RuntimeError(f"{self.path}: {name} has {data.nbytes} bytes, declared {nbytes}")
            copy_tensor(data, self._handle)
        else:
            size = 0
            for block in [data] if isinstance(data, np.ndarray) else data:
                block = np.ascontiguousarray(block).reshape(-1)
                size += block.nbytes
                if size > nbytes:
                    raise RuntimeError(f"{self.path}: {name} has more than the declared {nbytes} bytes")
                _write_all(self._handle, block.data)
            if size != nbytes:
                raise RuntimeError(f"{self.path}: {name} has {size} bytes, declared {nbytes}")
        self._next += 1

    def close(self) -> None:
        done = self._next == len(self.order)
        self._handle.close()
        if not done:
            raise RuntimeError(f"{self.path}: closed after {self._next} of {len(self.order)} tensors")

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, *rest) -> None:
        if exc_type is None:
            self.close()
        else:
            self._handle.close()
