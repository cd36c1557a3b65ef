"""GGUF reader over a read-only mmap: header, metadata, tensor infos, zero-copy tensor views.

A model file is untrusted input: every count, length and offset is checked against the
bytes that remain before it is used, and every failure is a GGUFError that says what is
wrong and where. Nothing is allocated in proportion to a claimed count, only to bytes
that are really in the file.
"""
from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tensorsharp.errors import GGUFError
from tensorsharp.gguf.constants import (
    DEFAULT_ALIGNMENT, GGML_MAX_DIMS, GGUF_MAGIC, HEADER_SIZE, INT64_MAX, KEY_ALIGNMENT,
    MAX_ALIGNMENT, MAX_ARRAY_DEPTH, MIN_VALUE_SIZE, SCALAR_FORMATS, SUPPORTED_VERSIONS,
    GGUFValueType,
)
from tensorsharp.gguf.strings import read_string_array
from tensorsharp.gguf.types import TYPES_BY_ID, TensorType

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_SCALAR_STRUCTS = {t: struct.Struct(fmt) for t, (fmt, _) in SCALAR_FORMATS.items()}
_MIN_KV_SIZE = 8 + 4 + 1                   # empty key, value type, one-byte value
_MIN_TENSOR_INFO_SIZE = 8 + 4 + 8 + 4 + 8  # empty name, n_dims, one dim, type, offset


class _Mapping:
    """The read-only mmap, shared by a GGUFFile and its TensorInfos (so they hold no cycle)."""
    __slots__ = ("path", "mm")

    def __init__(self, path: str, mm: mmap.mmap):
        self.path, self.mm = path, mm

    def view(self, offset: int, n_bytes: int) -> np.ndarray:
        if self.mm is None:
            raise ValueError(f"{self.path}: GGUF file is closed")
        return np.frombuffer(self.mm, dtype=np.uint8, count=n_bytes, offset=offset)

    def release(self, offset: int, n_bytes: int) -> None:
        """Drops the whole pages inside [offset, offset + n_bytes) from this process's memory; a
        later read faults them in from the file again."""
        page = mmap.PAGESIZE
        start, end = -(-offset // page) * page, (offset + n_bytes) // page * page
        if self.mm is not None and end > start and hasattr(mmap, "MADV_DONTNEED"):
            self.mm.madvise(mmap.MADV_DONTNEED, start, end - start)

    def close(self) -> None:
        mm, self.mm = self.mm, None
        if mm is not None:
            try:
                mm.close()
            except BufferError:
                pass  # views exported from it are alive; mmap unmaps itself when the last one goes


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of a GGUF file; shape is in GGUF order (shape[0] is the row length, ne0)."""
    name: str
    type: TensorType
    shape: tuple[int, ...]
    n_elements: int
    n_bytes: int
    offset: int  # absolute byte offset of the data in the file
    _map: _Mapping = field(repr=False, compare=False)

    @property
    def type_name(self) -> str:
        return self.type.name

    @property
    def row_bytes(self) -> int:
        return self.type.row_bytes(self.shape[0])

    @property
    def n_rows(self) -> int:
        return self.n_elements // self.shape[0]

    @property
    def data(self) -> np.ndarray:
        """The tensor's bytes: a read-only uint8 (n_bytes,) view over the mmap, no copy."""
        return self._map.view(self.offset, self.n_bytes)

    def release(self, first: int = 0, n_bytes: int | None = None) -> None:
        """Drops the pages of bytes [first, first + n_bytes) of the tensor from memory once a copy
        serves instead (data still reads them, from the file)."""
        self._map.release(self.offset + first, self.n_bytes - first if n_bytes is None else n_bytes)


class _Cursor:
    """Reads little-endian fields from buf[pos:size], checking each length against what remains."""
    __slots__ = ("buf", "size", "pos")

    def __init__(self, buf: mmap.mmap, pos: int, size: int):
        self.buf, self.pos, self.size = buf, pos, size

    def take(self, n: int, what: str) -> int:
        """Claim the next n bytes; returns where they start."""
        if n > self.size - self.pos:
            raise GGUFError(f"{what}: needs {n} bytes at offset {self.pos} "
                            f"but only {self.size - self.pos} remain (file size {self.size})")
        start = self.pos
        self.pos = start + n
        return start

    def u32(self, what: str) -> int:
        return _U32.unpack_from(self.buf, self.take(4, what))[0]

    def u64(self, what: str) -> int:
        return _U64.unpack_from(self.buf, self.take(8, what))[0]

    def string(self, what: str) -> str:
        n = self.u64(f"{what}: string length")
        if n > self.size - self.pos:
            raise GGUFError(f"{what}: string length {n} exceeds remaining {self.size - self.pos} bytes")
        start = self.take(n, what)
        try:
            return str(self.buf[start:start + n], "utf-8")
        except UnicodeDecodeError as e:
            raise GGUFError(f"{what}: invalid UTF-8 at byte {e.start} of the string ({e.reason})") from None


def _value_type(code: int, what: str) -> GGUFValueType:
    try:
        return GGUFValueType(code)
    except ValueError:
        raise GGUFError(f"{what}: unknown value type {code}") from None


def _read_scalar(cur: _Cursor, vtype: GGUFValueType, what: str) -> int | float | bool | str:
    if vtype is GGUFValueType.STRING:
        return cur.string(what)
    st = _SCALAR_STRUCTS[vtype]
    value = st.unpack_from(cur.buf, cur.take(st.size, what))[0]
    if vtype is GGUFValueType.BOOL:
        if value > 1:
            raise GGUFError(f"{what}: bool value {value} is neither 0 nor 1")
        return bool(value)
    return value


def _read_array(cur: _Cursor, what: str, depth: int) -> tuple[Any, GGUFValueType]:
    """(value, element type): a numpy array of numbers or bools, a list of str, or a list of arrays."""
    if depth > MAX_ARRAY_DEPTH:
        raise GGUFError(f"{what}: arrays nested deeper than {MAX_ARRAY_DEPTH} levels")
    etype = _value_type(cur.u32(f"{what}: array element type"), f"{what}: array element")
    n = cur.u64(f"{what}: array length")
    need = n * MIN_VALUE_SIZE[etype]
    if need > cur.size - cur.pos:
        raise GGUFError(f"{what}: array of {n} {etype.name} needs at least {need} bytes "
                        f"but only {cur.size - cur.pos} remain")
    if etype is GGUFValueType.STRING:
        values, cur.pos = read_string_array(cur.buf, cur.pos, n, cur.size, what)
        return values, etype
    if etype is GGUFValueType.ARRAY:
        return [_read_array(cur, f"{what}[{i}]", depth + 1)[0] for i in range(n)], etype
    start = cur.take(need, what)
    # A copy, so metadata outlives close() and holds no export on the mmap.
    arr = np.frombuffer(cur.buf[start:start + need], dtype=SCALAR_FORMATS[etype][1])
    if etype is GGUFValueType.BOOL:
        if n and arr.max() > 1:
            raise GGUFError(f"{what}: bool array holds {int(arr.max())}, which is neither 0 nor 1")
        arr = arr.view(np.bool_)
    return arr, etype


class GGUFFile:
    """A parsed GGUF file kept open over a read-only mmap.

    metadata: key -> int | float | bool | str | numpy array | list[str] | list (nested arrays)
    metadata_types: key -> (value type,) or (ARRAY, element type)
    tensors: name -> TensorInfo, in file order
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = os.fspath(path)
        with open(self.path, "rb") as f:
            self.size = os.fstat(f.fileno()).st_size
            if self.size < HEADER_SIZE:
                raise GGUFError(f"{self.path}: {self.size} bytes is too short for a GGUF header ({HEADER_SIZE} bytes)")
            self._map = _Mapping(self.path, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))
        try:
            self._parse()
        except BaseException:
            self.close()
            raise

    def _parse(self) -> None:
        buf, size = self._map.mm, self.size
        magic = buf[:4]
        if magic != GGUF_MAGIC:
            raise GGUFError(f"not a GGUF file: magic {magic!r}, expected {GGUF_MAGIC!r}")
        cur = _Cursor(buf, 4, size)
        self.version = cur.u32("version")
        if self.version not in SUPPORTED_VERSIONS:
            if self.version == 1:
                raise GGUFError("GGUF version 1 (32-bit counts, files from before September 2023) "
                                "is not supported; convert the model again with a current llama.cpp")
            if int.from_bytes(self.version.to_bytes(4, "little"), "big") in SUPPORTED_VERSIONS:
                raise GGUFError("big-endian GGUF files are not supported")
            raise GGUFError(f"unsupported GGUF version {self.version} (supported: 2, 3)")
        n_tensors = cur.u64("tensor count")
        n_kv = cur.u64("metadata key count")
        need = n_kv * _MIN_KV_SIZE + n_tensors * _MIN_TENSOR_INFO_SIZE
        if need > size - cur.pos:
            raise GGUFError(f"header claims {n_tensors} tensors and {n_kv} metadata keys, which need at "
                            f"least {need} bytes, but only {size - cur.pos} follow the header")
        self._read_metadata(cur, n_kv)
        self.alignment = self._read_alignment()
        infos = self._read_tensor_infos(cur, n_tensors)
        self.data_offset = -(-cur.pos // self.alignment) * self.alignment
        if self.data_offset > size:
            raise GGUFError(f"tensor data would start at {self.data_offset}, past the end of the file ({size})")
        self.tensors = self._place_tensors(infos)

    def _read_metadata(self, cur: _Cursor, n_kv: int) -> None:
        self.metadata: dict[str, Any] = {}
        self.metadata_types: dict[str, tuple[GGUFValueType, ...]] = {}
        for i in range(n_kv):
            key = cur.string(f"metadata key #{i}")
            what = f"metadata key #{i} {key!r}"
            if key in self.metadata:
                raise GGUFError(f"{what}: duplicate key")
            vtype = _value_type(cur.u32(f"{what}: value type"), what)
            if vtype is GGUFValueType.ARRAY:
                self.metadata[key], etype = _read_array(cur, what, 1)
                self.metadata_types[key] = (vtype, etype)
            else:
                self.metadata[key] = _read_scalar(cur, vtype, what)
                self.metadata_types[key] = (vtype,)

    def _read_alignment(self) -> int:
        if KEY_ALIGNMENT not in self.metadata:
            return DEFAULT_ALIGNMENT
        if self.metadata_types[KEY_ALIGNMENT] != (GGUFValueType.UINT32,):
            raise GGUFError(f"{KEY_ALIGNMENT} must be a UINT32, "
                            f"not {'/'.join(t.name for t in self.metadata_types[KEY_ALIGNMENT])}")
        a = self.metadata[KEY_ALIGNMENT]
        if not 0 < a <= MAX_ALIGNMENT or a & (a - 1):
            raise GGUFError(f"{KEY_ALIGNMENT} = {a} is not a power of two in 1..{MAX_ALIGNMENT}")
        return a

    def _read_tensor_infos(self, cur: _Cursor, n_tensors: int) -> list[tuple]:
        """(name, type, shape, n_elements, n_bytes, offset in the data section) per tensor."""
        infos, names = [], set()
        for i in range(n_tensors):
            name = cur.string(f"tensor #{i} name")
            what = f"tensor #{i} {name!r}"
            if name in names:
                raise GGUFError(f"{what}: duplicate tensor name")
            names.add(name)
            n_dims = cur.u32(f"{what}: n_dims")
            if not 1 <= n_dims <= GGML_MAX_DIMS:
                raise GGUFError(f"{what}: n_dims {n_dims} is not in 1..{GGML_MAX_DIMS}")
            shape = struct.unpack_from(f"<{n_dims}Q", cur.buf, cur.take(8 * n_dims, f"{what}: dims"))
            n_elements = 1
            for d in shape:
                n_elements *= d
            if 0 in shape or n_elements > INT64_MAX:
                raise GGUFError(f"{what}: shape {list(shape)} has a zero dimension or more than 2^63 elements")
            type_id = cur.u32(f"{what}: type")
            ttype = TYPES_BY_ID.get(type_id)
            if ttype is None:
                raise GGUFError(f"{what}: unknown tensor type id {type_id}")
            if shape[0] % ttype.block_size:
                raise GGUFError(f"{what}: row length {shape[0]} is not a whole number of "
                                f"{ttype.name} blocks of {ttype.block_size}")
            n_bytes = n_elements // ttype.block_size * ttype.type_size
            rel_offset = cur.u64(f"{what}: data offset")
            infos.append((name, ttype, shape, n_elements, n_bytes, rel_offset))
        return infos

    def _place_tensors(self, infos: list) -> dict[str, TensorInfo]:
        """Check every tensor lies aligned inside the data section and none overlap."""
        tensors = {}
        for name, ttype, shape, n_elements, n_bytes, rel_offset in infos:
            what = f"tensor {name!r}"
            if rel_offset % self.alignment:
                raise GGUFError(f"{what}: data offset {rel_offset} is not a multiple of the alignment {self.alignment}")
            start = self.data_offset + rel_offset
            if start + n_bytes > self.size:
                raise GGUFError(f"{what}: data [{start}, {start + n_bytes}) beyond end of file (size {self.size})")
            tensors[name] = TensorInfo(name, ttype, shape, n_elements, n_bytes, start, self._map)
        by_offset = sorted(tensors.values(), key=lambda t: t.offset)
        for prev, t in zip(by_offset, by_offset[1:]):
            if t.offset < prev.offset + prev.n_bytes:
                raise GGUFError(f"tensor {t.name!r}: data [{t.offset}, {t.offset + t.n_bytes}) overlaps "
                                f"tensor {prev.name!r} [{prev.offset}, {prev.offset + prev.n_bytes})")
        return tensors

    def rows(self, name: str) -> np.ndarray:
        """Tensor `name` as a read-only uint8 (n_rows, row_bytes) view, rows kept in their blocks."""
        t = self.tensors[name]
        return t.data.reshape(t.n_rows, t.row_bytes)

    def close(self) -> None:
        """Release the mapping; tensor views still alive keep it mapped until they are dropped."""
        self._map.close()

    def __enter__(self) -> GGUFFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"GGUFFile({self.path!r}, version={self.version}, {len(self.metadata)} keys, "
                f"{len(self.tensors)} tensors{', closed' if self._map.mm is None else ''})")
