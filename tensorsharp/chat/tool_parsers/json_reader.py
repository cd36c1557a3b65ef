"""An incremental JSON reader: checks one value character by character as a model generates it."""
from __future__ import annotations

import re

# What JsonReader.feed says about the character it was given.
MORE = "more"      # the character belongs to the value, which goes on
DONE = "done"      # the character completed the value
BEFORE = "before"  # the value ended just before the character (a number needs to see what follows)
ERROR = "error"    # no JSON value can continue with the character

_WS = " \t\n\r"
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_NUMBER_CHARS = frozenset("0123456789+-.eE")
_LITERALS = ("true", "false", "null")
_ESCAPES = frozenset('"\\/bfnrtu')
_HEX = frozenset("0123456789abcdefABCDEF")

(_VALUE, _ARRAY_FIRST, _STRING, _ESCAPE, _UNICODE, _NUMBER_STATE, _LITERAL,
 _KEY_FIRST, _KEY, _COLON, _AFTER) = range(11)


class JsonReader:
    """Reads exactly one JSON value (RFC 8259) and says, per character, whether it goes on, is
    complete or is broken — so a tool call's arguments can be streamed as they are generated and
    malformed text is caught at the first character that cannot belong."""

    def __init__(self):
        self._stack: list[str] = []  # open containers, "{" or "["
        self._state = _VALUE
        self._key = False            # the string being read is an object key
        self._word = ""              # number or literal so far
        self._hex = 0                # \u digits still to come

    def feed(self, ch: str) -> str:
        s = self._state
        if s == _STRING:
            if ch == '"':
                return self._string_end()
            if ch == "\\":
                self._state = _ESCAPE
            elif ch < " ":
                return ERROR  # control characters must be escaped inside strings
            return MORE
        if s == _ESCAPE:
            if ch not in _ESCAPES:
                return ERROR
            self._state, self._hex = (_UNICODE, 4) if ch == "u" else (_STRING, 0)
            return MORE
        if s == _UNICODE:
            if ch not in _HEX:
                return ERROR
            self._hex -= 1
            if not self._hex:
                self._state = _STRING
            return MORE
        if s == _NUMBER_STATE:
            if ch in _NUMBER_CHARS:
                self._word += ch
                return MORE
            if not _NUMBER.fullmatch(self._word):
                return ERROR
            if not self._stack:
                return BEFORE
            self._state = _AFTER
            return self.feed(ch)
        if s == _LITERAL:
            word = self._word + ch
            if not any(lit.startswith(word) for lit in _LITERALS):
                return ERROR
            self._word = word
            return self._value_end() if word in _LITERALS else MORE
        if ch in _WS:
            return MORE
        if s == _VALUE or s == _ARRAY_FIRST:
            if s == _ARRAY_FIRST and ch == "]":
                return self._close("[")
            return self._value_start(ch)
        if s == _KEY_FIRST or s == _KEY:
            if s == _KEY_FIRST and ch == "}":
                return self._close("{")
            if ch != '"':
                return ERROR
            self._state, self._key = _STRING, True
            return MORE
        if s == _COLON:
            if ch != ":":
                return ERROR
            self._state = _VALUE
            return MORE
        # _AFTER: a value inside a container is complete
        if ch == ",":
            self._state = _KEY if self._stack[-1] == "{" else _VALUE
            return MORE
        return self._close("{" if ch == "}" else "[" if ch == "]" else "")

    def _value_start(self, ch: str) -> str:
        if ch == '"':
            self._state, self._key = _STRING, False
        elif ch == "{":
            self._stack.append("{")
            self._state = _KEY_FIRST
        elif ch == "[":
            self._stack.append("[")
            self._state = _ARRAY_FIRST
        elif ch == "-" or ch.isdigit():
            self._state, self._word = _NUMBER_STATE, ch
        elif ch in "tfn":
            self._state, self._word = _LITERAL, ch
        else:
            return ERROR
        return MORE

    def _string_end(self) -> str:
        if self._key:
            self._state = _COLON
            return MORE
        return self._value_end()

    def _close(self, opener: str) -> str:
        if not self._stack or self._stack[-1] != opener:
            return ERROR
        self._stack.pop()
        return self._value_end()

    def _value_end(self) -> str:
        if not self._stack:
            self._state = _VALUE
            return DONE
        self._state = _AFTER
        return MORE
