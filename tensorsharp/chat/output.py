"""What a chat model's streamed text becomes: content, reasoning and tool calls, as deltas and aggregates."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

if TYPE_CHECKING:
    from tensorsharp.chat.families import ChatFormat
    from tensorsharp.chat.reasoning import ReasoningSplitter
    from tensorsharp.chat.tool_parsers.base import ToolParser


@dataclass
class ContentDelta:
    text: str


@dataclass
class ThinkingDelta:
    text: str


@dataclass
class ToolCallDelta:
    """One piece of a tool call. The first delta of a call carries its id and name; the
    `arguments` of all deltas of one index, joined, are the call's JSON arguments text."""
    index: int
    id: str | None
    name: str | None
    arguments: str


Delta = Union[ContentDelta, ThinkingDelta, ToolCallDelta]


class OutputParser:
    """One per request: feed it the generated text as it settles, get back deltas.

    Reasoning is split off first (reasoning None: the tool parser splits it, as harmony's does);
    the content that remains goes through the family's tool-call parser when there is one. `content`, `thinking` and `tool_calls` (OpenAI shape,
    arguments as a JSON string) hold everything returned so far."""

    def __init__(self, reasoning: ReasoningSplitter | None, tools: ToolParser | None = None, calls_only: bool = False):
        self._reasoning = reasoning
        self._tools = tools
        self._calls_only = calls_only
        # Pieces, joined when read: a long answer streamed in small deltas stays linear in time.
        self._content: list[str] = []
        self._thinking: list[str] = []
        self._calls: list[tuple[str, str, list[str]]] = []  # (id, name, argument pieces)

    @property
    def content(self) -> str:
        return _joined(self._content)

    @property
    def thinking(self) -> str:
        return _joined(self._thinking)

    @property
    def tool_calls(self) -> list[dict]:
        return [{"id": cid, "type": "function", "function": {"name": name, "arguments": _joined(args)}}
                for cid, name, args in self._calls]

    def feed(self, text: str) -> list[Delta]:
        return self._record(self._route(self._reasoning.feed(text) if self._reasoning else [ContentDelta(text)]))

    def finish(self) -> list[Delta]:
        """Flush what was held back (a marker that never completed is plain text after all). With
        calls_only (a grammar let the model write nothing but calls), what is held back is a call
        cut off by the token limit: it is dropped rather than passed off as content."""
        out = self._route(self._reasoning.finish()) if self._reasoning else []
        if self._tools is not None:
            tail = self._tools.finish()
            out += [d for d in tail if not isinstance(d, ContentDelta)] if self._calls_only else tail
        return self._record(out)

    def _route(self, deltas: list[Delta]) -> list[Delta]:
        if self._tools is None:
            return deltas
        out: list[Delta] = []
        for d in deltas:
            out += self._tools.feed(d.text) if isinstance(d, ContentDelta) else [d]
        return out

    def _record(self, deltas: list[Delta]) -> list[Delta]:
        for d in deltas:
            if isinstance(d, ContentDelta):
                self._content.append(d.text)
            elif isinstance(d, ThinkingDelta):
                self._thinking.append(d.text)
            elif d.index == len(self._calls):
                self._calls.append((d.id, d.name, [d.arguments]))
            else:
                self._calls[d.index][2].append(d.arguments)
        return deltas


def _joined(pieces: list[str]) -> str:
    if len(pieces) > 1:
        pieces[:] = ["".join(pieces)]
    return pieces[0] if pieces else ""


def chat_format(metadata: dict, template_source: str | None, tool_format: str | None = None) -> ChatFormat:
    """The model's chat format, resolved from its GGUF metadata and chat template text;
    tool_format names a tool-call family explicitly (the --tool-format override)."""
    # families builds OutputParsers, so it is imported here rather than at the top.
    from tensorsharp.chat.families import chat_format as resolve
    return resolve(metadata, template_source, tool_format)
