"""GGUF reader: real models against gguf.GGUFReader, GGUFWriter round trips, and each malformed-file check."""
import hashlib
import struct
from pathlib import Path

import gguf
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tensorsharp.gguf import GGUFError, GGUFFile, GGUFValueType as VT
from tensorsharp.gguf.strings import read_string_array
from tensorsharp.testing.models import model_path

MODELS = ["SmolLM2-135M-Instruct.Q4_1.gguf", "gemma-3-270m-q4_k_m.gguf", "qwen2.5-coder-0.5b-instruct.gguf"]


# ---- digests that let gguf-py's answers be cached as JSON ----

def _digest_strings(items) -> str:
    h = hashlib.sha256()
    for s in items:
        b = s.encode() if isinstance(s, str) else bytes(s)
        h.update(struct.pack("<Q", len(b)) + b)
    return h.hexdigest()


def _digest_array(arr) -> str:
    return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()


def _sample_tensors(names: list[str]) -> list[str]:
    return [names[0], names[len(names) // 2], names[-1]]


def _reference(path: Path) -> dict:
    """What gguf.GGUFReader reports for a file, reduced to JSON-able facts."""
    r = gguf.GGUFReader(path)
    meta = {}
    for key, fld in r.fields.items():
        if key.startswith("GGUF."):
            continue
        types = [int(t) for t in fld.types]
        if types[0] == VT.ARRAY and types[1] == VT.STRING:
            items = [bytes(fld.parts[i]) for i in fld.data]
            value = {"len": len(items), "sha256": _digest_strings(items), "head": [b.decode() for b in items[:3]]}
        elif types[0] == VT.ARRAY:
            arr = np.concatenate([fld.parts[i] for i in fld.data])
            value = {"len": len(arr), "sha256": _digest_array(arr), "head": arr[:3].tolist()}
        elif types[0] == VT.STRING:
            value = bytes(fld.parts[-1]).decode()
        else:
            value = fld.parts[-1][0].item()
        meta[key] = {"types": types, "value": value}
    tensors = [[t.name, int(t.tensor_type), [int(d) for d in t.shape], int(t.data_offset), int(t.n_bytes),
                int(t.n_elements)] for t in r.tensors]
    sample = _sample_tensors([t[0] for t in tensors])
    data = {t.name: hashlib.sha256(r.data[t.data_offset:t.data_offset + t.n_bytes].tobytes()).hexdigest()
            for t in r.tensors if t.name in sample}
    return {"version": int(r.fields["GGUF.version"].parts[-1][0]), "alignment": r.alignment,
            "data_offset": r.data_offset, "metadata": meta, "tensors": tensors, "data": data}


@pytest.fixture(scope="module", params=MODELS)
def model(request):
    """(GGUFFile, gguf-py reference). gguf-py needs up to a minute on a 262k vocabulary, so its
    answer is kept in pytest's cache, keyed by file name, size and mtime."""
    path = model_path(request.param)
    st_ = path.stat()
    key = f"tensorsharp/gguf_reference/{request.param}-{st_.st_size}-{st_.st_mtime_ns}"
    ref = request.config.cache.get(key, None)
    if ref is None:
        ref = _reference(path)
        request.config.cache.set(key, ref)
    with GGUFFile(path) as f:
        yield f, ref


def test_header_and_tensors_match_gguf_py(model):
    f, ref = model
    assert (f.version, f.alignment, f.data_offset) == (ref["version"], ref["alignment"], ref["data_offset"])
    ours = [[t.name, t.type.id, list(t.shape), t.offset, t.n_bytes, t.n_elements] for t in f.tensors.values()]
    assert ours == ref["tensors"]
    for t in f.tensors.values():
        assert t.type_name == gguf.GGMLQuantizationType(t.type.id).name


def test_metadata_matches_gguf_py(model):
    f, ref = model
    assert list(f.metadata) == list(ref["metadata"])
    for key, want in ref["metadata"].items():
        value, types = f.metadata[key], [int(t) for t in f.metadata_types[key]]
        assert types == want["types"], key
        if types[0] == VT.ARRAY:
            digest = _digest_strings(value) if types[1] == VT.STRING else _digest_array(value)
            assert {"len": len(value), "sha256": digest} == {k: want["value"][k] for k in ("len", "sha256")}, key
            head = value[:3] if types[1] == VT.STRING else value[:3].tolist()
            assert head == want["value"]["head"], key
        else:
            assert value == want["value"], key
    tokens = f.metadata["tokenizer.ggml.tokens"]
    assert len(tokens) == len(f.metadata["tokenizer.ggml.token_type"]) > 40000
    assert all(type(s) is str for s in tokens)


def test_tensor_bytes_match_gguf_py(model):
    f, ref = model
    for name in _sample_tensors(list(f.tensors)):
        assert hashlib.sha256(f.tensors[name].data.tobytes()).hexdigest() == ref["data"][name], name


def test_released_pages_read_again_from_the_file(model):
    # A model that repacks a tensor drops its pages; anything still reading it must see the file.
    f, ref = model
    for name in _sample_tensors(list(f.tensors)):
        t = f.tensors[name]
        t.release(1, t.n_bytes - 2)
        t.release()
        assert hashlib.sha256(t.data.tobytes()).hexdigest() == ref["data"][name], name


def test_rows_are_read_only_views_of_the_file(model):
    f, _ = model
    t = next(t for t in f.tensors.values() if len(t.shape) == 2 and t.type.block_size > 1)
    rows = f.rows(t.name)
    assert rows.shape == (t.shape[1], t.type.row_bytes(t.shape[0])) and rows.dtype == np.uint8
    assert not rows.flags.writeable and np.shares_memory(rows, t.data)
    with open(f.path, "rb") as fh:
        for r in (0, rows.shape[0] - 1):
            fh.seek(t.offset + r * rows.shape[1])
            assert fh.read(rows.shape[1]) == rows[r].tobytes()


# ---- files written by gguf.GGUFWriter ----

def _write(path, kvs=(), tensors=(), alignment=None, **kw) -> Path:
    w = gguf.GGUFWriter(path, "testarch", **kw)
    if alignment:
        w.add_custom_alignment(alignment)
    for args in kvs:
        w.add_key_value(*args)
    for name, arr, raw_dtype in tensors:
        w.add_tensor(name, arr, raw_dtype=raw_dtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return Path(path)


NUMERIC = {VT.UINT8: (np.uint8, [0, 255]), VT.INT8: (np.int8, [-128, 127]),
           VT.UINT16: (np.uint16, [0, 65535]), VT.INT16: (np.int16, [-32768, 32767]),
           VT.UINT32: (np.uint32, [0, 2**32 - 1]), VT.INT32: (np.int32, [-2**31, 2**31 - 1]),
           VT.FLOAT32: (np.float32, [1.5, -0.25]), VT.UINT64: (np.uint64, [0, 2**64 - 1]),
           VT.INT64: (np.int64, [-2**63, 2**63 - 1]), VT.FLOAT64: (np.float64, [0.1, -1e300])}
STRINGS = ["", "plain", "ünïcødé ✓ 🦙", "x" * 300, "nul\x00inside", "\n\t "]


def test_every_value_type_round_trips(tmp_path):
    kvs = [(f"scalar.{t.name}", values[1], gguf.GGUFValueType(t)) for t, (_, values) in NUMERIC.items()]
    kvs += [(f"array.{t.name}", values, gguf.GGUFValueType.ARRAY, gguf.GGUFValueType(t))
            for t, (_, values) in NUMERIC.items()]
    kvs += [("scalar.BOOL", True, gguf.GGUFValueType.BOOL), ("scalar.STRING", "hé", gguf.GGUFValueType.STRING),
            ("array.BOOL", [True, False, True], gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.BOOL),
            ("array.STRING", STRINGS, gguf.GGUFValueType.ARRAY),
            ("array.ARRAY", [[1, 2], [3], ["a", "b"], [[4.5]]], gguf.GGUFValueType.ARRAY)]
    with GGUFFile(_write(tmp_path / "kv.gguf", kvs)) as f:
        assert f.version == 3 and f.tensors == {} and f.alignment == 32
        assert f.metadata["general.architecture"] == "testarch"
        for t, (dtype, values) in NUMERIC.items():
            got = f.metadata[f"scalar.{t.name}"]
            assert got == values[1] and type(got) is (float if t in (VT.FLOAT32, VT.FLOAT64) else int)
            assert f.metadata_types[f"scalar.{t.name}"] == (t,)
            arr = f.metadata[f"array.{t.name}"]
            assert arr.dtype == dtype and arr.tolist() == values
            assert f.metadata_types[f"array.{t.name}"] == (VT.ARRAY, t)
        assert f.metadata["scalar.BOOL"] is True and f.metadata["scalar.STRING"] == "hé"
        assert f.metadata["array.BOOL"].dtype == np.bool_ and f.metadata["array.BOOL"].tolist() == [True, False, True]
        assert f.metadata["array.STRING"] == STRINGS
        nested = f.metadata["array.ARRAY"]
        assert [a if isinstance(a, list) else a.tolist() for a in nested[:3]] == [[1, 2], [3], ["a", "b"]]
        assert nested[3][0].tolist() == [4.5] and f.metadata_types["array.ARRAY"] == (VT.ARRAY, VT.ARRAY)


def test_tensors_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    f32 = rng.standard_normal((3, 5), dtype=np.float32)
    f16 = rng.standard_normal(16).astype(np.float16)
    i8 = rng.integers(-128, 128, (2, 2, 3), dtype=np.int8)
    q4 = rng.integers(0, 256, (4, 2 * 18), dtype=np.uint8)  # 4 rows of two Q4_0 blocks
    tensors = [("f32", f32, None), ("f16", f16, None), ("i8", i8, None),
               ("q4", q4, gguf.GGMLQuantizationType.Q4_0)]
    with GGUFFile(_write(tmp_path / "t.gguf", tensors=tensors, alignment=64)) as f:
        assert f.alignment == 64 and f.data_offset % 64 == 0
        assert list(f.tensors) == ["f32", "f16", "i8", "q4"]
        want = {"f32": ("F32", (5, 3), f32), "f16": ("F16", (16,), f16), "i8": ("I8", (3, 2, 2), i8),
                "q4": ("Q4_0", (64, 4), q4)}
        for name, (type_name, shape, arr) in want.items():
            t = f.tensors[name]
            assert (t.type_name, t.shape, t.n_bytes) == (type_name, shape, arr.nbytes)
            assert (t.offset - f.data_offset) % 64 == 0
            assert t.data.tobytes() == arr.tobytes()
        assert f.rows("q4").shape == (4, 36) and f.rows("q4").tobytes() == q4.tobytes()
        assert np.array_equal(f.rows("f32").view(np.float32), f32)


def test_version_2_has_the_version_3_layout(tmp_path):
    path = _write(tmp_path / "v.gguf", [("k", STRINGS, gguf.GGUFValueType.ARRAY)],
                  [("w", np.ones((2, 4), np.float32), None)])
    raw = bytearray(path.read_bytes())
    raw[4:8] = struct.pack("<I", 2)
    path.write_bytes(raw)
    with GGUFFile(path) as f:
        assert f.version == 2 and f.metadata["k"] == STRINGS
        assert f.tensors["w"].shape == (4, 2) and f.tensors["w"].data.view(np.float32).tolist() == [1.0] * 8


def test_closing_keeps_views_alive(tmp_path):
    f = GGUFFile(_write(tmp_path / "c.gguf", tensors=[("w", np.arange(8, dtype=np.float32), None)]))
    view = f.tensors["w"].data
    f.close()
    assert view.view(np.float32).tolist() == list(range(8))
    with pytest.raises(ValueError, match="closed"):
        f.tensors["w"].data
    f.close()


# ---- hand-built malformed files: each check fires with a message that says what is wrong ----

def _s(text) -> bytes:
    b = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(b)) + b


def _kv(key, vtype, payload: bytes) -> bytes:
    return _s(key) + struct.pack("<I", vtype) + payload


def _ti(name, dims, type_id=0, offset=0) -> bytes:
    return _s(name) + struct.pack(f"<I{len(dims)}QIQ", len(dims), *dims, type_id, offset)


def _file(kvs=(), tis=(), data=b"", version=3, counts=None, align=32) -> bytes:
    n_tensors, n_kv = counts or (len(tis), len(kvs))
    head = b"GGUF" + struct.pack("<IQQ", version, n_tensors, n_kv) + b"".join(kvs) + b"".join(tis)
    return head + bytes(-len(head) % align) + data


def _arr(etype, n, payload: bytes) -> bytes:
    return struct.pack("<IQ", etype, n) + payload


F32_4 = np.arange(4, dtype=np.float32).tobytes()
MALFORMED = {
    "short": (b"GGUF\3\0\0\0", "too short"),
    "magic": (b"GGML" + bytes(40), "not a GGUF file"),
    "v1": (_file(version=1), "version 1 .*not supported"),
    "v4": (_file(version=4), "unsupported GGUF version 4"),
    "big-endian": (b"GGUF" + struct.pack(">IQQ", 3, 0, 0), "big-endian"),
    "counts": (_file(counts=(2**40, 3)), "header claims 1099511627776 tensors and 3 metadata keys"),
    "key length": (_file([struct.pack("<Q", 9 * 10**18) + bytes(20)]),
                   "metadata key #0: string length 9000000000000000000 exceeds remaining"),
    "key utf8": (_file([_kv(b"bad\xff", VT.UINT8, b"\0")]), "metadata key #0: invalid UTF-8"),
    "dup key": (_file([_kv("a", VT.UINT8, b"\0"), _kv("a", VT.UINT8, b"\0")]), "metadata key #1 'a': duplicate"),
    "value type": (_file([_kv("a", 13, b"\0")]), "'a': unknown value type 13"),
    "bool": (_file([_kv("a", VT.BOOL, b"\2")]), "bool value 2"),
    "bool array": (_file([_kv("a", VT.ARRAY, _arr(VT.BOOL, 2, b"\1\3"))]), "bool array holds 3"),
    "array count": (_file([_kv("a", VT.ARRAY, _arr(VT.UINT32, 2**62, b""))]), "array of 4611686018427387904 UINT32"),
    "element type": (_file([_kv("a", VT.ARRAY, _arr(99, 1, b"\0"))]), "array element: unknown value type 99"),
    "nesting": (_file([_kv("a", VT.ARRAY, b"".join(_arr(VT.ARRAY, 1, b"") for _ in range(9)) + _arr(VT.UINT8, 0, b""))]),
                "nested deeper than 8"),
    "string in array": (_file([_kv("t", VT.ARRAY, _arr(VT.STRING, 3, _s("ok") + _s(b"\xc3") + _s("x")))]),
                        "'t': string #1 is not valid UTF-8"),
    "string length in array": (_file([_kv("t", VT.ARRAY, _arr(VT.STRING, 2, _s("ok") + struct.pack("<Q", 10**6) + bytes(30)))]),
                               "'t': string #1 length 1000000 exceeds remaining"),
    "alignment type": (_file([_kv("general.alignment", VT.UINT64, struct.pack("<Q", 32))]), "must be a UINT32"),
    "alignment value": (_file([_kv("general.alignment", VT.UINT32, struct.pack("<I", 48))]), "48 is not a power of two"),
    "n_dims 0": (_file(tis=[_ti("w", [])]), "tensor #0 'w': n_dims 0 is not in 1..4"),
    "n_dims 5": (_file(tis=[_ti("w", [1] * 5)]), "n_dims 5 is not in 1..4"),
    "zero dim": (_file(tis=[_ti("w", [4, 0])]), r"shape \[4, 0\] has a zero dimension"),
    "overflow": (_file(tis=[_ti("w", [2**32, 2**32])]), "more than 2\\^63 elements"),
    "type id": (_file(tis=[_ti("w", [32], type_id=4)]), "unknown tensor type id 4"),
    "blocks": (_file(tis=[_ti("w", [16, 2], type_id=2)]), "row length 16 is not a whole number of Q4_0 blocks of 32"),
    "dup tensor": (_file(tis=[_ti("w", [4]), _ti("w", [4], offset=32)], data=F32_4 * 4), "tensor #1 'w': duplicate"),
    "misaligned": (_file(tis=[_ti("w", [4], offset=8)], data=F32_4 * 4), "offset 8 is not a multiple of the alignment 32"),
    "beyond eof": (_file(tis=[_ti("blk.0.attn_q.weight", [4, 2])], data=F32_4),
                   r"tensor 'blk.0.attn_q.weight': data \[\d+, \d+\) beyond end of file \(size \d+\)"),
    "overlap": (_file(tis=[_ti("a", [16]), _ti("b", [4], offset=32)], data=F32_4 * 4), "'b'.*overlaps tensor 'a'"),
    "truncated info": ((b"GGUF" + struct.pack("<IQQ", 3, 1, 0) + _ti("w", [4]))[:-1],
                       "tensor #0 'w': data offset: needs 8 bytes"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_file_is_reported(tmp_path, case):
    raw, message = MALFORMED[case]
    path = tmp_path / "bad.gguf"
    path.write_bytes(raw)
    with pytest.raises(GGUFError, match=message):
        GGUFFile(path)


def test_well_formed_hand_built_file(tmp_path):
    """The builder above makes valid files when nothing is broken, so each case breaks one thing."""
    path = tmp_path / "good.gguf"
    path.write_bytes(_file([_kv("a", VT.ARRAY, _arr(VT.STRING, 0, b"")), _kv("b", VT.ARRAY, _arr(VT.INT32, 0, b""))],
                           [_ti("a", [16]), _ti("b", [4], offset=64)], data=F32_4 * 6))
    with GGUFFile(path) as f:
        assert f.metadata["a"] == [] and f.metadata["b"].tolist() == []
        assert [t.offset - f.data_offset for t in f.tensors.values()] == [0, 64]


def test_big_endian_writer_output_is_rejected(tmp_path):
    path = _write(tmp_path / "be.gguf", [("k", 1, gguf.GGUFValueType.UINT32)], endianess=gguf.GGUFEndian.BIG)
    with pytest.raises(GGUFError, match="big-endian"):
        GGUFFile(path)


# ---- the string-array fast path against the plain definition ----

def _records(strings) -> bytes:
    return b"".join(_s(x) for x in strings)


token = st.one_of(st.text(max_size=12), st.text(alphabet="\x00 a", max_size=10),
                  st.text(min_size=250, max_size=400), st.binary(max_size=9).map(lambda b: b.decode("latin-1")))


@settings(max_examples=300, deadline=None)
@given(st.lists(token, max_size=300), st.binary(max_size=16), st.binary(max_size=16))
def test_string_array_fast_path(strings, before, after):
    raw = before + _records(strings) + after
    got, end = read_string_array(raw, len(before), len(strings), len(raw), "t")
    assert got == strings and end == len(raw) - len(after)


@pytest.mark.parametrize("strings", [
    [""] * 5000,                                     # every field looks like eight more: chains break each step
    ["\x00" * 9, "a"] * 2000,                        # zero bytes inside strings look like fields too
    ["".join(map(chr, range(128)))] * 3 + ["ok"],    # no ASCII byte is free to separate strings
    ["é" * 200] * 3000,                              # 400-byte strings never take the fast path
    [f"tok{i}" for i in range(100_000)],             # many numpy chunks
])
def test_string_array_hard_cases(strings):
    raw = _records(strings)
    got, end = read_string_array(raw, 0, len(strings), len(raw), "t")
    assert got == strings and end == len(raw)


def test_string_array_error_names_the_string():
    strings = [f"tok{i}".encode() for i in range(100_000)]
    strings[70_000] = b"\xff"
    raw = _records(strings)
    with pytest.raises(GGUFError, match="string #70000 is not valid UTF-8"):
        read_string_array(raw, 0, len(strings), len(raw), "t")
    with pytest.raises(GGUFError, match="string #99999 length 8 exceeds remaining 7 bytes"):
        read_string_array(raw[:-1], 0, len(strings), len(raw) - 1, "t")
    with pytest.raises(GGUFError, match="string #100000 length field at offset"):
        read_string_array(raw, 0, len(strings) + 1, len(raw), "t")
