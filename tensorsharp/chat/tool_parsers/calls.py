"""The JSON of tool calls, read as it streams: one call object or an array of them."""
from __future__ import annotations

import json

from tensorsharp.chat.tool_parsers.json_reader import BEFORE, DONE, ERROR, MORE, JsonReader

NAME_KEY = "name"
ARGUMENT_KEYS = ("arguments", "parameters")  # Hermes/Mistral/OpenAI say arguments, Llama 3 parameters
NESTED_KEY = "function"                      # {"type": "function", "function": {"name", "arguments"}}
# Without a marker in front, a JSON object is a call only if it has no other keys than these.
BARE_KEYS = frozenset((NAME_KEY, *ARGUMENT_KEYS, NESTED_KEY, "type", "id"))

FAILED = "failed"  # feed's answer when the text is no (longer a) tool call; the character is not used
_WS = " \t\n\r"
(_ROOT, _ELEMENT_FIRST, _ELEMENT, _AFTER_ELEMENT, _KEY_FIRST, _KEY, _IN_KEY, _COLON, _VALUE_START,
 _IN_VALUE, _AFTER_VALUE) = range(11)


class CallReader:
    """Reads `{"name": ..., "arguments": {...}}` (or a JSON array of such objects) one character
    at a time and reports each call to `sink` as soon as it can:
    sink.begin_call(name, arguments_so_far), sink.call_arguments(text), sink.end_call().

    A call begins once its name is known and its arguments have started (or its object closed
    without any: arguments are then "{}"), so the first delta carries the name and the argument
    text streams after it. `unowned` is the text read since the last call began or ended, starting
    with the marker that introduced the JSON (`lead`): when feed answers FAILED the caller releases
    it as content. After a call began, its arguments go out as generated; if they break off,
    the call ends with them as they are (OpenAI's arguments are model text, not promised JSON)."""

    def __init__(self, sink, lead: str = "", bare: bool = False):
        self.sink = sink
        self.calls = 0          # calls begun
        self._unowned = [lead]  # pieces of `unowned` (lists: a long call must not cost quadratic time)
        self._bare = bare
        self._state = _ROOT
        self._in_array = False
        self._nesting = 0       # depth inside "function" objects of the current call
        self._reader: JsonReader | None = None
        self._key = ""
        self._text: list[str] = []  # the key or captured value being read
        self._new_call()

    def _new_call(self) -> None:
        self._name: str | None = None
        self._args: list[str] = []  # argument text read before the call could begin (decoded if quoted)
        self._args_key_seen = False
        self._begun = False
        self._quoted = False    # arguments sent as a JSON string holding the JSON text

    @property
    def unowned(self) -> str:
        return "".join(self._unowned)

    def feed(self, ch: str) -> str:
        """MORE, DONE (the whole JSON is read) or FAILED."""
        state = self._state
        if state == _IN_VALUE:
            return self._value_char(ch)
        if state == _IN_KEY:
            r = self._reader.feed(ch)
            if r == ERROR:
                return self._fail()
            self._text.append(ch)
            if r == DONE:
                key = json.loads("".join(self._text))
                if self._bare and key not in BARE_KEYS:
                    return self._fail()
                self._key, self._state = key, _COLON
            self._unowned.append(ch)
            return MORE
        if ch in _WS:
            self._unowned.append(ch)
            return MORE
        if state == _VALUE_START:
            return self._value_start(ch)
        if state == _ROOT and ch in "{[" or state in (_ELEMENT_FIRST, _ELEMENT) and ch == "{":
            self._in_array = self._in_array or ch == "["
            self._state = _ELEMENT_FIRST if ch == "[" else _KEY_FIRST
        elif state in (_KEY_FIRST, _KEY) and ch == '"':
            self._reader, self._text, self._state = JsonReader(), [ch], _IN_KEY
            self._reader.feed(ch)
        elif state == _COLON and ch == ":":
            self._state = _VALUE_START
        elif state == _AFTER_VALUE and ch == ",":
            self._state = _KEY
        elif state in (_KEY_FIRST, _AFTER_VALUE) and ch == "}":
            return self._close_object()
        elif state == _AFTER_ELEMENT and ch == ",":
            self._state = _ELEMENT
        elif state == _AFTER_ELEMENT and ch == "]":
            self._unowned = []
            return DONE
        else:
            return self._fail()
        self._unowned.append(ch)
        return MORE

    def cut(self) -> None:
        """The text ended inside the JSON (the reply hit max_tokens): what was read is a call being
        written, never content. Its name known, it is a call with the arguments written so far (as
        a call whose arguments break off); without one, nothing is left of it, so a reply cut there
        does not end in '{"name' beside its complete calls."""
        if self._name:
            self._begin()
        self.finish()
        self._unowned = []

    def finish(self) -> None:
        """The text ended here: a call whose arguments were streaming ends as it is."""
        if self._begun:
            self.sink.end_call()
            self._begun = False

    def _value_start(self, ch: str) -> str:
        key = self._key
        if key == NESTED_KEY and ch == "{":
            self._nesting += 1
            self._state = _KEY_FIRST
            self._unowned.append(ch)
            return MORE
        if key == NAME_KEY and ch != '"' or key in ARGUMENT_KEYS and self._args_key_seen:
            return self._fail()
        self._reader, self._text, self._state = JsonReader(), [], _IN_VALUE
        if key in ARGUMENT_KEYS:
            self._args_key_seen = True
            self._quoted = ch == '"'
            self._begin()
        return self._value_char(ch)

    def _value_char(self, ch: str) -> str:
        r = self._reader.feed(ch)
        if r == ERROR:
            return self._fail()
        if r == BEFORE:  # a bare number as arguments: the character belongs to what follows
            self._value_end()
            return self.feed(ch)
        if self._key in ARGUMENT_KEYS and not self._quoted:
            if self._begun:
                self.sink.call_arguments(ch)
            else:
                self._args.append(ch)
        else:
            self._text.append(ch)
        if self._begun:
            self._unowned = []
        else:
            self._unowned.append(ch)
        if r == DONE:
            self._value_end()
        return MORE

    def _value_end(self) -> None:
        self._state = _AFTER_VALUE
        if self._key == NAME_KEY:
            self._name = json.loads("".join(self._text))
            if self._args_key_seen:
                self._begin()
        elif self._key in ARGUMENT_KEYS and self._quoted:
            self._args = [json.loads("".join(self._text))]
            if self._begun:
                self.sink.call_arguments(self._args[0])

    def _begin(self) -> None:
        if self._begun or not self._name:
            return
        self._begun = True
        self.calls += 1
        self.sink.begin_call(self._name, "".join(self._args))
        self._unowned = []

    def _close_object(self) -> str:
        if self._nesting:
            self._nesting -= 1
            self._state = _AFTER_VALUE
            self._unowned.append("}")
            return MORE
        if not self._name or self._bare and not self._args_key_seen:
            return self._fail()
        if not self._begun:
            self._args = ["{}"]
            self._begin()
        self.finish()
        self._unowned = []
        self._new_call()
        if self._in_array:
            self._state = _AFTER_ELEMENT
            return MORE
        return DONE

    def _fail(self) -> str:
        self.finish()
        return FAILED
