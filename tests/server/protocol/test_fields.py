"""Typed field reads: wrong types and values are 400s naming the field; null means absent."""
import pytest

from tensorsharp.server.errors import ApiError
from tensorsharp.server.protocol.fields import Fields, parse_json


def err(fn, *args, **kw):
    with pytest.raises(ApiError) as e:
        fn(*args, **kw)
    assert e.value.status == 400
    return e.value.message


def test_parse_json():
    assert parse_json(b'{"a": 1}') == {"a": 1}
    assert "not valid JSON" in err(parse_json, b"{")
    assert "empty" in err(parse_json, b"  ")
    assert "an array" in err(parse_json, b"[1]")


def test_types_and_null():
    f = Fields({"i": 3, "fi": 4.0, "b": True, "s": "x", "n": None, "l": [1]}, "options")
    assert f.int("i") == 3 and f.int("fi") == 4 and f.int("n", 7) == 7
    assert "'options.b' must be an integer, not a boolean" in err(f.int, "b")
    assert "'options.s' must be a finite number" in err(f.float, "s")
    assert "'options.i' must be true or false" in err(f.bool, "i")
    assert "'options.l' must be a string" in err(f.str, "l")
    assert "'options.missing' is required" in err(f.str, "missing", required=True)


def test_ranges_and_strings():
    f = Fields({"t": 3.5, "k": -1, "stop": "x", "stops": ["a", "b"], "bad": ["a", 1]})
    assert "'t' must be between 0 and 2, got 3.5" in err(f.float, "t", lo=0, hi=2)
    assert "'k' must be >= 0" in err(f.int, "k", lo=0)
    assert f.strings("stop") == ["x"] and f.strings("stops") == ["a", "b"] and f.strings("none") == []
    assert "'bad'" in err(f.strings, "bad")
    assert "'nested' must be an object" in err(Fields({"nested": 1}).fields, "nested")
