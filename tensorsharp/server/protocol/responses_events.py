"""A response's output built from reply deltas, with the streamed events that build it (each
output item is added, filled by deltas and done in turn); a non-streamed response is the same
build with its events dropped, so both carry the same output."""
from __future__ import annotations

from tensorsharp.chat.output import ContentDelta, ThinkingDelta, ToolCallDelta
from tensorsharp.server.protocol import responses as rp


class OutputBuilder:
    """Feed it each token's reply deltas (and its logprob entry, when asked for), then finish();
    `output` holds the finished items."""

    def __init__(self, summary: bool):
        self.summary = summary      # reasoning streams as summary_text, else as reasoning_text
        self.output: list[dict] = []
        self._open: dict | None = None    # {"kind", "id", "text" (pieces), "logprobs", + call fields}
        self._held: list[dict] = []       # logprobs of tokens whose text the parser still holds back

    def feed(self, deltas: list, logprob: dict | None = None) -> list[dict]:
        if logprob is not None:
            self._held.append(logprob)
        events = []
        for d in deltas:
            if isinstance(d, (ContentDelta, ThinkingDelta)) and d.text:
                events += self._to("message" if isinstance(d, ContentDelta) else "reasoning")
                events.append(self._text_delta(d.text))
            elif isinstance(d, ToolCallDelta):
                if d.id is not None:
                    events += self._close("completed")
                    events += self._add("function_call", call_id=d.id, name=d.name)
                if d.arguments:
                    self._open["text"].append(d.arguments)
                    events.append(self._event("response.function_call_arguments.delta", delta=d.arguments))
        if any(not isinstance(d, ContentDelta) for d in deltas):   # held tokens became reasoning or a call
            self._held = []
        return events

    def finish(self, status: str) -> list[dict]:
        """Ends the open item ("completed", or "incomplete" when the reply was cut short). A reply
        that said nothing at all is one empty message."""
        events = [] if self.output or self._open else self._add("message")
        return events + self._close(status)

    # -- items -------------------------------------------------------------------------------------
    def _to(self, kind: str) -> list[dict]:
        if self._open is not None and self._open["kind"] == kind:
            return []
        return self._close("completed") + self._add(kind)

    def _add(self, kind: str, **call) -> list[dict]:
        self._open = {"kind": kind, "id": rp.new_id(rp.ITEM_PREFIX[kind]), "text": [], "logprobs": [], **call}
        events = [self._event("response.output_item.added", item=self._item("in_progress", empty=True))]
        if kind == "message":
            events.append(self._text_event("response.content_part.added", part=rp.text_part("")))
        elif kind == "reasoning" and self.summary:
            events.append(self._summary_event("response.reasoning_summary_part.added", part=_summary_part("")))
        elif kind == "reasoning":
            events.append(self._text_event("response.content_part.added", part=_reasoning_part("")))
        return events

    def _close(self, status: str) -> list[dict]:
        if self._open is None:
            return []
        kind, text, logprobs = self._open["kind"], "".join(self._open["text"]), self._open["logprobs"]
        if kind == "message":
            events = [self._text_event("response.output_text.done", text=text, logprobs=logprobs),
                      self._text_event("response.content_part.done", part=rp.text_part(text, logprobs))]
        elif kind == "reasoning" and self.summary:
            events = [self._summary_event("response.reasoning_summary_text.done", text=text),
                      self._summary_event("response.reasoning_summary_part.done", part=_summary_part(text))]
        elif kind == "reasoning":
            events = [self._text_event("response.reasoning_text.done", text=text),
                      self._text_event("response.content_part.done", part=_reasoning_part(text))]
        else:
            events = [self._event("response.function_call_arguments.done", name=self._open["name"],
                                  arguments=text)]
        item = self._item(status)
        events.append(self._event("response.output_item.done", item=item))
        self.output.append(item)
        self._open = None
        return events

    def _item(self, status: str, empty: bool = False) -> dict:
        o = self._open
        text = "" if empty else "".join(o["text"])
        if o["kind"] == "message":
            item = rp.message_item(o["id"], text, status, o["logprobs"])
            if empty:
                item["content"] = []
            return item
        if o["kind"] == "reasoning":
            item = rp.reasoning_item(o["id"], text, self.summary, status)
            if empty:
                item.update(summary=[], content=[])
            return item
        return rp.call_item(o["id"], o["call_id"], o["name"], text, status)

    # -- events ------------------------------------------------------------------------------------
    def _event(self, kind: str, **fields) -> dict:
        """An event about the open item: output_item events carry the item itself, the others its
        id. Sequence numbers are the route's, as it numbers every event of the stream."""
        out = {"type": kind, "output_index": len(self.output)}
        if "item" not in fields:
            out["item_id"] = self._open["id"]
        return {**out, **fields}

    def _text_event(self, kind: str, **fields) -> dict:
        return self._event(kind, content_index=0, **fields)

    def _summary_event(self, kind: str, **fields) -> dict:
        return self._event(kind, summary_index=0, **fields)

    def _text_delta(self, text: str) -> dict:
        """Text added to the open message or reasoning item."""
        self._open["text"].append(text)
        if self._open["kind"] == "message":
            taken, self._held = self._held, []
            self._open["logprobs"] += taken
            return self._text_event("response.output_text.delta", delta=text, logprobs=taken)
        if self.summary:
            return self._summary_event("response.reasoning_summary_text.delta", delta=text)
        return self._text_event("response.reasoning_text.delta", delta=text)


def _summary_part(text: str) -> dict:
    return {"type": "summary_text", "text": text}


def _reasoning_part(text: str) -> dict:
    return {"type": "reasoning_text", "text": text}
