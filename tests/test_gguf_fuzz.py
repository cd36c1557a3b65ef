"""GGUF reader on hostile input: truncations of a real file, mutations of a small one, absurd headers.

Every case must either parse into tensors that lie inside the file or raise GGUFError;
anything else (another exception, a crash, a large allocation) fails.
"""
import struct
import tracemalloc
from pathlib import Path

import gguf
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from tensorsharp.gguf import TYPES_BY_ID, GGUFError, GGUFFile, GGUFValueType as VT
from tensorsharp.gguf.constants import MIN_VALUE_SIZE
from tensorsharp.gguf.strings import string_fields
from tensorsharp.testing.models import model_path

MAX_PARSE_MEMORY = 16 << 20  # bytes; the files here are a few KB, so any more means a claimed count was trusted


def _parse_or_reject(path: Path) -> GGUFFile | None:
    """None if GGUFError; otherwise the file, after checking its tensors are sane and readable."""
    try:
        f = GGUFFile(path)
    except GGUFError:
        return None
    with f:
        end = f.data_offset
        for t in sorted(f.tensors.values(), key=lambda t: t.offset):
            assert t.offset >= end and (t.offset - f.data_offset) % f.alignment == 0
            end = t.offset + t.n_bytes
            assert t.data.nbytes == t.n_bytes and f.rows(t.name).size == t.n_bytes
        assert end <= f.size
    return f


def _parse_bounded(path: Path) -> GGUFFile | None:
    tracemalloc.start()
    try:
        return _parse_or_reject(path)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < MAX_PARSE_MEMORY, f"parsing a {path.stat().st_size}-byte file allocated {peak} bytes"


# ---- (a) a real file cut short anywhere in its header ----

@pytest.fixture(scope="module")
def smol_header():
    """SmolLM2's bytes up to its tensor data, and the truncation points worth trying, by region."""
    smol = model_path("smollm2-135m")
    with GGUFFile(smol) as f:
        data_offset = f.data_offset
        first_tensor = next(iter(f.tensors))
    with open(smol, "rb") as fh:
        raw = fh.read(data_offset)
    points = {"start": range(4096)}
    for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.merges"):
        k = raw.find(key.encode())
        n = struct.unpack_from("<Q", raw, k + len(key) + 8)[0]
        fields, _ = string_fields(raw, k + len(key) + 16, n, len(raw), key)
        # Around 24 records spread over the array: at, inside and just after each length field.
        points[key] = [int(p) + d for p in fields[::len(fields) // 24] for d in (0, 1, 7, 8, 9)]
    name = first_tensor.encode()
    ti = raw.find(struct.pack("<Q", len(name)) + name)
    points["tensor infos"] = list(range(ti, ti + 64)) + list(range(ti + 64, data_offset, (data_offset - ti) // 24))
    points["tensor infos"].append(data_offset - 1)
    return raw, points


@pytest.mark.parametrize("region", ["start", "tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tensor infos"])
def test_truncated_real_file_is_rejected(smol_header, tmp_path, region):
    raw, points = smol_header
    path = tmp_path / "cut.gguf"
    accepted = []
    for n in points[region]:
        path.write_bytes(raw[:n])
        if _parse_or_reject(path) is not None:
            accepted.append(n)
    assert not accepted, f"truncations accepted at {accepted[:10]}"
    assert len(points[region]) >= 80  # the regions really were found


def test_truncated_tensor_data_is_rejected(tmp_path):
    smol = model_path("smollm2-135m")
    with GGUFFile(smol) as f:
        last = max(f.tensors.values(), key=lambda t: t.offset)
        cut = last.offset + last.n_bytes - 1
    path = tmp_path / "cut.gguf"
    with open(smol, "rb") as src, open(path, "wb") as dst:
        dst.write(src.read(cut))
    with pytest.raises(GGUFError, match=f"tensor '{last.name}': data .* beyond end of file"):
        GGUFFile(path)


# ---- (b) a small valid file with bytes flipped or overwritten before its tensor data ----

@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """(path to write mutants to, the valid file's bytes, where its tensor data starts)."""
    d = tmp_path_factory.mktemp("fuzz")
    w = gguf.GGUFWriter(d / "small.gguf", "llama")
    w.add_uint32("llama.block_count", 2)
    w.add_float32("llama.attention.layer_norm_rms_epsilon", 1e-5)
    w.add_bool("tokenizer.ggml.add_bos_token", True)
    w.add_key_value("x.u8", 7, gguf.GGUFValueType.UINT8)
    w.add_key_value("x.i64", -3, gguf.GGUFValueType.INT64)
    w.add_key_value("x.f64", 0.5, gguf.GGUFValueType.FLOAT64)
    w.add_array("tokenizer.ggml.tokens", ["<s>", "</s>", "a", "é", "", "tok" * 90])
    w.add_array("tokenizer.ggml.scores", [0.0, -1.0, -2.5, -3.0, 0.25, 1.0])
    w.add_key_value("x.bools", [True, False], gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.BOOL)
    w.add_array("x.nested", [[1, 2], ["ab"]])
    w.add_tensor("token_embd.weight", np.ones((6, 8), np.float32))
    w.add_tensor("blk.0.attn_q.weight", np.zeros((2, 36), np.uint8), raw_dtype=gguf.GGMLQuantizationType.Q4_0)
    w.add_tensor("output_norm.weight", np.ones(16, np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    raw = (d / "small.gguf").read_bytes()
    with GGUFFile(d / "small.gguf") as f:
        assert len(f.tensors) == 3
        return d / "mutant.gguf", raw, f.data_offset


mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 1 << 20), st.integers(0, 7)),
    st.tuples(st.just("byte"), st.integers(0, 1 << 20), st.integers(0, 255)),
    st.tuples(st.just("u64"), st.integers(0, 1 << 20),
              st.sampled_from([0, 1, 3, 255, 256, 2**31, 2**32 - 1, 2**32, 2**40, 2**63 - 1, 2**63, 2**64 - 1])),
)


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mutation, min_size=1, max_size=3))
def test_mutated_header_parses_or_is_rejected(small, mutations):
    path, raw, header_end = small
    buf = bytearray(raw)
    for kind, pos, arg in mutations:
        pos %= header_end
        if kind == "flip":
            buf[pos] ^= 1 << arg
        elif kind == "byte":
            buf[pos] = arg
        else:
            pos = min(pos, header_end - 8)
            buf[pos:pos + 8] = struct.pack("<Q", arg)
    path.write_bytes(buf)
    _parse_bounded(path)


# ---- (c) structurally plausible headers whose counts, lengths and ids are absurd ----

absurd64 = st.one_of(st.integers(0, 6), st.integers(0, 2**64 - 1),
                     st.sampled_from([2**31, 2**32 - 1, 2**32, 2**62, 2**63 - 1, 2**63, 2**64 - 1]))
# Strategies are built once here: building them inside the composites costs more than the parse.
absurd32 = st.one_of(st.integers(0, 14), st.integers(0, 2**32 - 1), st.sampled_from([2**31, 2**32 - 1]))
absurd64 = st.one_of(st.integers(0, 6), st.integers(0, 2**64 - 1),
                     st.sampled_from([2**31, 2**32 - 1, 2**32, 2**62, 2**63 - 1, 2**63, 2**64 - 1]))
lie = st.integers(0, 7)  # 0 means lie; anything else, the truth
value_type = st.sampled_from(list(VT) + [13, 255, 2**32 - 1])
# Mostly real names (so parsing goes past them, and some repeat), sometimes any bytes.
real_names = st.sampled_from([b"general.alignment", b"tokenizer.ggml.tokens", b"blk.0.attn_q.weight", b"w", b"",
                              "é".encode()])
name_bytes = st.one_of(real_names, real_names, real_names, st.binary(max_size=10))


def _count(draw, true: int) -> int:
    return true if draw(lie) else draw(absurd64)


@st.composite
def gguf_string(draw):
    b = draw(name_bytes)
    return struct.pack("<Q", _count(draw, len(b))) + b


STRING = gguf_string()
ELEMENTS = {t: st.lists(st.binary(min_size=MIN_VALUE_SIZE[t], max_size=MIN_VALUE_SIZE[t]), max_size=3)
            for t in VT if t not in (VT.STRING, VT.ARRAY)}
ELEMENTS[VT.STRING] = st.lists(STRING, max_size=3)


@st.composite
def gguf_array(draw, nested_ok=True):
    etype = draw(value_type)
    if etype == VT.ARRAY and nested_ok:
        items = draw(INNER_ARRAYS)
    else:
        items = draw(ELEMENTS[etype]) if etype in ELEMENTS else []
    return struct.pack("<IQ", etype, _count(draw, len(items))) + b"".join(items)


INNER_ARRAYS = st.lists(gguf_array(nested_ok=False), max_size=2)
VALUES = {**{t: e.map(lambda items: items[0] if items else b"") for t, e in ELEMENTS.items()},
          VT.STRING: STRING, VT.ARRAY: gguf_array()}
dim = st.one_of(st.sampled_from([1, 32, 256]), absurd64)
type_id = st.one_of(st.sampled_from(sorted(TYPES_BY_ID)), absurd32)
n_dims = st.one_of(st.integers(1, 4), absurd32)
offset = st.one_of(st.integers(0, 8).map(lambda i: 32 * i), absurd64)
any_bytes = st.binary(max_size=8)


@st.composite
def gguf_kv(draw):
    vtype = draw(value_type)
    value = draw(VALUES[vtype]) if vtype in VALUES else draw(any_bytes)
    return draw(STRING) + struct.pack("<I", vtype) + value


@st.composite
def gguf_tensor_info(draw):
    nd = draw(n_dims)
    dims = [draw(dim) for _ in range(min(nd, 5))]
    return draw(STRING) + struct.pack(f"<I{len(dims)}QIQ", nd, *dims, draw(type_id), draw(offset))


kv_lists = st.lists(gguf_kv(), max_size=3)
tensor_info_lists = st.lists(gguf_tensor_info(), max_size=2)
version = st.sampled_from([2, 3])
tail = st.binary(max_size=256)


@st.composite
def gguf_file(draw):
    kvs, tis = draw(kv_lists), draw(tensor_info_lists)
    counts = struct.pack("<QQ", _count(draw, len(tis)), _count(draw, len(kvs)))
    head = b"GGUF" + struct.pack("<I", draw(version)) + counts + b"".join(kvs + tis)
    return head + bytes(-len(head) % 32) + draw(tail)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(gguf_file())
def test_absurd_header_parses_or_is_rejected(small, raw):
    path = small[0]
    path.write_bytes(raw)
    _parse_bounded(path)
