"""The families' chat formats through the server: a reply in each family's own syntax streams as
content, thinking and tool-call deltas in all three dialects, and each dialect's thinking switch
reaches the variable the family's template reads.

The served model's chat format and template are swapped for a family's real ones (llama.cpp's
copies); the model still generates, but the reply parser the server picks is fed the family's
reply one piece per generated token in place of the model's text (SmolLM2 knows no such syntax)."""
import json

import pytest

from tensorsharp.chat.families import chat_format
from tensorsharp.chat.template import ChatTemplate
from tensorsharp.server import generation
from tensorsharp.testing import llama_convert
from tensorsharp.testing.server import ndjson_lines, sse_events

FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
ASK = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather in Paris?"}]
ARGS = {"city": "Paris"}
CALL = '"get_weather", "{key}": {{"city": "Paris"}}'

ARCHITECTURES = {"meta-llama-Llama-3.2-3B-Instruct": "llama", "ibm-granite-granite-3.3-2B-Instruct": "granite",
                 "ibm-granite-granite-4.0": "granite", "HuggingFaceTB-SmolLM3-3B": "smollm3",
                 "google-gemma-2-2b-it": "gemma2", "phi-4": "phi3"}
GET_WEATHER = [("get_weather", ARGS)]
# case -> (template, think, tools offered, the family's reply, content, thinking, calls)
REPLIES = {
    "llama3.2-python-tag": ("meta-llama-Llama-3.2-3B-Instruct", None, True,
                            'Checking.<|python_tag|>{"name": ' + CALL.format(key="parameters") + "}",
                            "Checking.", "", GET_WEATHER),
    "granite3.3-call": ("ibm-granite-granite-3.3-2B-Instruct", None, True,
                        '<|tool_call|>[{"name": ' + CALL.format(key="arguments") + "}]", "", "", GET_WEATHER),
    "granite3.3-thinking": ("ibm-granite-granite-3.3-2B-Instruct", True, False,
                            "<think>The tool said sunny.</think><response>It is sunny.</response>",
                            "It is sunny.", "The tool said sunny.", []),
    "granite4-call": ("ibm-granite-granite-4.0", None, True,
                      '<tool_call>\n{"name": ' + CALL.format(key="arguments") + "}\n</tool_call>", "", "", GET_WEATHER),
    "smollm3-thinking-call": ("HuggingFaceTB-SmolLM3-3B", None, True,
                              '<think>\nThe user wants the weather.\n</think>\n<tool_call>\n{"name": '
                              + CALL.format(key="arguments") + "}\n</tool_call>", "", "The user wants the weather.",
                              GET_WEATHER),
    "gemma2-taught-call": ("google-gemma-2-2b-it", None, True,
                           'I will look.\n<tool_call>\n{"name": ' + CALL.format(key="arguments") + "}\n</tool_call>",
                           "I will look.", "", GET_WEATHER),
    "phi4-taught-call": ("phi-4", None, True, '{"name": ' + CALL.format(key="arguments") + "}", "", "", GET_WEATHER),
}


class Replayed:
    """A reply parser fed `text` in place of what the model generates: each generated piece
    releases the next few characters, finish() the rest."""

    def __init__(self, parser, text: str, step: int = 4):
        self._parser = parser
        self._pieces = [text[i:i + step] for i in range(0, len(text), step)]

    def feed(self, _generated: str) -> list:
        return self._parser.feed(self._pieces.pop(0)) if self._pieces else []

    def finish(self, cut_off: bool = False) -> list:
        out = self._parser.feed("".join(self._pieces))
        self._pieces = []
        return out + self._parser.finish(cut_off)

    def __getattr__(self, name):  # content, thinking, tool_calls
        return getattr(self._parser, name)


@pytest.fixture
def family(client, monkeypatch):
    """family(name, reply=None) serves the named template's chat format; requests made then feed
    `reply` to the parser the server picks. Returns the list the rendered prompts go to."""
    served = client.application.extensions["tensorsharp"].served
    prompts = []
    new_reply = generation.new_reply

    def use(name, reply=None):
        src = llama_convert.chat_template(name)
        monkeypatch.setattr(served, "template", ChatTemplate(src, "<s>", "</s>"))
        monkeypatch.setattr(served, "chat", chat_format({"general.architecture": ARCHITECTURES[name]}, src))

        def replaying(served, job, prompt):
            prompts.append(prompt)
            r = new_reply(served, job, prompt)
            if reply is not None:
                r.parser = Replayed(r.parser, reply)
            return r
        monkeypatch.setattr(generation, "new_reply", replaying)
        return prompts
    return use


def _openai(client, body, stream):
    r = client.post("/v1/chat/completions", json={"model": FILE, **body, "max_tokens": 6, "stream": stream})
    assert r.status_code == 200, r.get_data(as_text=True)
    if not stream:
        msg = r.get_json()["choices"][0]["message"]
        calls = [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in msg.get("tool_calls") or []]
        return msg["content"] or "", msg.get("reasoning_content") or "", calls
    content, thinking, calls = "", "", []
    for e in sse_events(r.data)[:-1]:
        d = e["choices"][0]["delta"]
        content += d.get("content") or ""
        thinking += d.get("reasoning_content") or ""
        for c in d.get("tool_calls", []):
            if c["index"] == len(calls):
                assert c["id"] and c["function"]["name"]
                calls.append([c["function"]["name"], ""])
            calls[c["index"]][1] += c["function"]["arguments"]
    return content, thinking, [(n, json.loads(a)) for n, a in calls]


def _ollama(client, body, stream):
    r = client.post("/api/chat", json={"model": FILE, **body, "options": {"num_predict": 6}, "stream": stream})
    assert r.status_code == 200, r.get_data(as_text=True)
    lines = ndjson_lines(r.data) if stream else [r.get_json()]
    content = "".join(line["message"].get("content", "") for line in lines)
    thinking = "".join(line["message"].get("thinking", "") for line in lines)
    calls = [(c["function"]["name"], c["function"]["arguments"]) for line in lines
             for c in line["message"].get("tool_calls", [])]
    return content, thinking, calls


def _webui(client, body, stream):
    body = {**body, "maxTokens": 6}
    if "think" in body and body["think"] is None:
        del body["think"]
    events = sse_events(client.post("/api/chat", json=body).data)
    assert events[-1]["done"]
    content = "".join(e.get("token", "") for e in events)
    thinking = "".join(e.get("thinking", "") for e in events)
    calls = [(c["function"]["name"], json.loads(c["function"]["arguments"])) for e in events
             for c in e.get("tool_calls", [])]
    return content, thinking, calls


DIALECTS = {"openai": _openai, "ollama": _ollama, "webui": _webui}


@pytest.mark.parametrize("case", REPLIES)
def test_family_reply_streams_in_every_dialect(client, family, case):
    name, think, offer, text, content, thinking, calls = REPLIES[case]
    prompts = family(name, text)
    body = {"messages": ASK, **({"tools": [WEATHER]} if offer else {})}
    for dialect, ask in DIALECTS.items():
        switch = {"chat_template_kwargs": {"thinking": think}} if dialect == "openai" and think else {"think": think}
        for stream in (True, False) if dialect != "webui" else (True,):
            got = ask(client, {**body, **switch}, stream)
            assert got == (content, thinking, calls), (dialect, stream)
    # Every request rendered the family's own prompt (Gemma 2's with the system text folded in).
    assert len(set(prompts)) == 1 and "Be brief." in prompts[0]


# (template, request fields for each switch state: the dialect's own words) -> what the prompt shows
SWITCHED = {
    "HuggingFaceTB-SmolLM3-3B": ("Reasoning Mode: /think", "Reasoning Mode: /no_think"),
    "ibm-granite-granite-3.3-2B-Instruct": ("write your response between <response></response>", None),
}
SWITCHES = {
    "openai": [({"reasoning_effort": "high"}, {"reasoning_effort": "none"}),
               ({"chat_template_kwargs": {"enable_thinking": True}},
                {"chat_template_kwargs": {"enable_thinking": False}}),
               ({"chat_template_kwargs": {"thinking": True}}, {"chat_template_kwargs": {"thinking": False}}),
               ({"think": True}, {"think": False})],
    "ollama": [({"think": "high"}, {"think": False}), ({"think": True}, {"think": False})],
    "webui": [({"think": True}, {"think": False})],
}


@pytest.mark.parametrize("name", SWITCHED)
@pytest.mark.parametrize("dialect", SWITCHES)
def test_thinking_switch_reaches_the_template(client, family, name, dialect):
    on_text, off_text = SWITCHED[name]
    prompts = family(name)
    messages = {"messages": [{"role": "user", "content": "Hi"}]}
    for on, off in SWITCHES[dialect]:
        del prompts[:]
        DIALECTS[dialect](client, {**messages, **on}, True)
        DIALECTS[dialect](client, {**messages, **off}, True)
        assert on_text in prompts[0] and on_text not in prompts[1], (on, off)
        if off_text:
            assert off_text in prompts[1]
