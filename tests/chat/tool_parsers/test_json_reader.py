"""The incremental JSON reader agrees with json.loads on where a value is complete and valid."""
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from tensorsharp.chat.tool_parsers.json_reader import BEFORE, DONE, ERROR, MORE, JsonReader

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
values = st.recursive(scalars, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=5), kids, max_size=4),
                      max_leaves=12)


def statuses(text):
    reader, out = JsonReader(), []
    for ch in text:
        out.append(reader.feed(ch))
        if out[-1] != MORE:
            break
    return out


def accepted(text) -> bool:
    s = statuses(text)
    return len(s) == len(text) > 0 and s[-1] == DONE and all(x == MORE for x in s[:-1])


def json_accepts(text) -> bool:
    """json.loads' verdict on text as one complete value that ends at its last character."""
    def refuse(name):
        raise ValueError(name)
    try:
        value = json.loads(text, parse_constant=refuse)
    except ValueError:
        return False
    if text != text.rstrip():  # whitespace after the value is not the value's
        return False
    # A number is complete only once something follows it.
    return isinstance(value, bool) or not isinstance(value, (int, float))


@settings(max_examples=150, deadline=None)
@given(values, st.sampled_from([None, 1]), st.booleans())
def test_valid_json_completes_at_its_last_character(value, indent, ascii_only):
    text = json.dumps([value], indent=indent, ensure_ascii=ascii_only)
    assert accepted(text)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_agrees_with_json_loads_on_damaged_json(data):
    text = json.dumps(data.draw(values))
    at = data.draw(st.integers(0, len(text)))
    edit = data.draw(st.sampled_from(["drop", "insert", "replace"]))
    ch = data.draw(st.sampled_from(list('{}[]":,0-.eE \\ntu') + ["\x01"]))
    text = {"drop": text[:at] + text[at + 1:], "insert": text[:at] + ch + text[at:],
            "replace": text[:at] + ch + text[at + 1:]}[edit]
    assert accepted(text) == json_accepts(text), text


def test_a_number_ends_before_the_character_that_follows_it():
    assert statuses("-12.5e3 ") == [MORE] * 7 + [BEFORE]
    assert statuses("01 ") == [MORE, MORE, ERROR]
    assert statuses("[1.]") == [MORE, MORE, MORE, ERROR]


def test_errors_at_the_first_character_that_cannot_belong():
    assert statuses('{"a" 1}')[-1] == ERROR and len(statuses('{"a" 1}')) == 6
    assert statuses('{"a": tru}') == [MORE] * 9 + [ERROR]
    assert statuses('["\\x"]') == [MORE, MORE, MORE, ERROR]
    assert statuses("[1}") == [MORE, MORE, ERROR]
