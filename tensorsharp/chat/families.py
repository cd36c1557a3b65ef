"""A model's chat format, resolved once from its GGUF metadata and chat template text: which
tool-call family it speaks, whether it reasons, and the parser each request gets."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Callable

import jinja2
import jinja2.meta

from tensorsharp.chat import tool_parsers
from tensorsharp.chat.output import OutputParser
from tensorsharp.chat.reasoning import MISTRAL_THINK, THINK, ReasoningSplitter
from tensorsharp.chat.template import EXTENSIONS, ChatTemplate, TemplateError
from tensorsharp.chat.tool_parsers import Family, granite, harmony, hermes, llama3, mistral, phi4
from tensorsharp.chat.tool_parsers.base import JsonCallParser, tool_response

_TOOLS_VARIABLE = re.compile(r"\btools\b")
# A message's own `tools` field, where Phi-4-mini's template looks for the tools (in the system message).
_MESSAGE_TOOLS = re.compile(r"""\bmessage\s*(\[\s*['"]tools['"]\s*\]|\.tools\b)""")
# The variables through which a template's caller turns reasoning on or off: Qwen3 and SmolLM3
# read enable_thinking, Granite 3.3 reads thinking.
THINKING_VARIABLES = ("enable_thinking", "thinking")
# Granite 3.3's thinking prompt asks for "<think></think>" and then "<response></response>".
GRANITE_ANSWER = ("<response>", "</response>")
# Architectures trained on the Hermes <tool_call> form whose GGUF templates may not lay out tools
# (llama.cpp's copy of SmolLM3's template leaves out its tools section).
_HERMES_ARCHITECTURES = ("smollm3",)


@dataclass(frozen=True)
class ChatFormat:
    family: Family
    template_renders_tools: bool  # the template lays out `tools` itself
    supports_thinking: bool
    reasoning_markers: tuple[tuple[str, str], ...]  # (opening, closing) pairs
    thinking_variables: tuple[str, ...] = ()  # of THINKING_VARIABLES, those the template reads
    answer_markers: tuple[str, str] | None = None  # what wraps the answer after reasoning (Granite 3.3)
    system_role: bool = True  # False: the template refuses system messages (Gemma 2 raises)
    xml_tools: bool = False  # the template reads the tools as `xml_tools` (SmolLM3's own template)
    message_tools: bool = False  # the template reads them from the system message's `tools` field (Phi-4-mini)

    @property
    def tool_family(self) -> str:
        return self.family.name

    @property
    def supports_tools(self) -> bool:
        """The template lays out tools, or the family teaches its call form in a system prompt."""
        return self.template_renders_tools or self.family.system_prompt is not None

    @property
    def call_prefix(self) -> str:
        return self.family.call_prefix

    @property
    def call_suffix(self) -> str:
        return self.family.call_suffix

    @property
    def arguments_key(self) -> str:
        return self.family.arguments_key

    @property
    def call_trigger(self) -> str:
        return self.family.call_trigger

    @property
    def bare_call_start(self) -> bool:
        """A call object with no marker may open the answer (or follow a call)."""
        return issubclass(self.family.parser, JsonCallParser) and self.family.parser.BARE_START

    @property
    def bare_call_openings(self) -> tuple[str, ...]:
        """Text after which a call object with no marker is a call (a ```json fence)."""
        if not issubclass(self.family.parser, JsonCallParser):
            return ()
        return tuple(b.opening for b in self.family.parser.BLOCKS if b.bare)

    @property
    def calls_as_array(self) -> bool:
        return self.family.calls_as_array

    @property
    def call_grammar(self) -> bool:
        """Calls are JSON objects in the text, which a constraint can hold to the tools offered."""
        return not self.family.channels

    def make_parser(self, tools: list | None = None, think: bool | None = None, prompt: str = "",
                    new_id: Callable[[], str] | None = None, calls_only: bool = False) -> OutputParser:
        """The parser of one request. tools: the tools offered (None or empty: no tool calls are
        looked for). think: False drops reasoning, True or None (the model's default) splits it off.
        prompt: the rendered prompt, whose end says whether generation starts inside reasoning.
        new_id makes tool-call ids (default "call_" + random hex). calls_only: the output is
        constrained to tool calls (tool_choice required or named)."""
        if self.family.channels:
            parser = self.family.parser(new_id, calls=bool(tools), keep_thinking=think is not False)
            return OutputParser(None, parser, calls_only=calls_only)
        reasoning = ReasoningSplitter(self.reasoning_markers, in_thinking=self.starts_in_thinking(prompt),
                                      keep=think is not False, answer=self.answer_markers)
        return OutputParser(reasoning, self.family.parser(new_id) if tools else None, calls_only=calls_only)

    def parser_markers(self, tools: bool) -> tuple[str, ...]:
        """The strings a request's parser looks for in the generated text: the reasoning markers,
        and the tool-call markers when tools are offered. A vocabulary may hold them as control
        tokens, which the decoder must then render (see Tokenizer.control_ids)."""
        pairs = self.reasoning_markers + ((self.answer_markers,) if self.answer_markers else ())
        reasoning = tuple(m for pair in pairs for m in pair)
        return reasoning + (self.family.markers if tools or self.family.channels else ())

    def starts_in_thinking(self, prompt: str) -> bool:
        """Whether the prompt ends inside an opened reasoning block (Qwen3 thinking templates and
        DeepSeek-R1 end the generation prompt with "<think>\\n")."""
        tail = prompt.rstrip()
        return any(tail.endswith(opening) for opening, _ in self.reasoning_markers)

    def system_prompt_for_tools(self, tools: list | None) -> str | None:
        """Text for the system prompt that teaches the call syntax; None when there are no tools
        or the template renders them itself."""
        if not tools or self.template_renders_tools or self.family.system_prompt is None:
            return None
        return self.family.system_prompt(tools)

    def render(self, template: ChatTemplate, messages: list[dict], tools: list | None = None,
               think: bool | None = None, reasoning_effort: str | None = None) -> str:
        """The prompt of a chat request: the messages the template is given (see
        messages_for_template, and system text folded into the first user turn where the template
        refuses the role), the tools when it lays them out, the thinking switch (None: the
        template's default) under every variable name the template reads for it, and the reasoning
        level ("low" | "medium" | "high") templates such as GPT-OSS's read as reasoning_effort."""
        messages = self.messages_for_template(messages, tools)
        if self.message_tools and tools:
            messages = self._with_system_tools(messages, tools)
        if not self.system_role:
            messages = _fold_system(messages)
        tools = (tools if self.template_renders_tools else None) or None
        variables = {name: think for name in self.thinking_variables}
        variables["reasoning_effort"] = reasoning_effort
        if self.xml_tools:
            variables["xml_tools"] = tools
        return template.render(messages, tools=tools, **variables)

    def _with_system_tools(self, messages: list[dict], tools: list) -> list[dict]:
        """The messages with the tools in the system message's `tools` field (a system message
        with the family's default text opens them when the client sent none), and earlier calls
        written into their assistant turn's text, which is all such a template shows of it."""
        out = [({**m, "content": _join(m.get("content"), self._write_calls(m["tool_calls"]))}
                if m.get("role") == "assistant" and m.get("tool_calls") else m) for m in messages]
        if out and out[0].get("role") == "system":
            first, rest = out[0], out[1:]
        else:
            first, rest = {"role": "system", "content": phi4.DEFAULT_SYSTEM}, out
        return [{**first, "tools": phi4.tools_text(tools)}, *rest]

    def messages_for_template(self, messages: list[dict], tools: list | None) -> list[dict]:
        """The messages to render. Unchanged when the template lays out tools itself (or none are
        offered); otherwise the teaching prompt joins the system message, earlier calls are written
        back in the family's own syntax and tool results become user turns wrapped in
        <tool_response> tags, so a template that knows nothing of tools still shows the model the
        whole loop."""
        teach = self.system_prompt_for_tools(tools)
        if teach is None:
            return messages
        if messages and messages[0].get("role") == "system":
            first, rest = messages[0], messages[1:]
            out = [{**first, "content": f"{first.get('content') or ''}\n\n{teach}".lstrip()}]
        else:
            out, rest = [{"role": "system", "content": teach}], messages
        results_turn = False  # the last message holds tool results: the next one joins it
        for m in rest:
            if m.get("role") == "tool":
                result = tool_response(_text(m.get("content")))
                if results_turn:
                    out[-1] = {**out[-1], "content": out[-1]["content"] + "\n" + result}
                else:
                    out.append({"role": "user", "content": result})
                results_turn = True
                continue
            results_turn = False
            if m.get("role") == "assistant" and m.get("tool_calls"):
                out.append({"role": "assistant", "content": _join(m.get("content"), self._write_calls(m["tool_calls"]))})
            else:
                out.append(m)
        return out

    def _write_calls(self, calls: list[dict]) -> str:
        objects = []
        for call in calls:
            fn = call.get("function", call)
            arguments = fn.get("arguments")
            if isinstance(arguments, str):
                try:
                    arguments = json.loads(arguments)
                except json.JSONDecodeError:
                    pass  # shown as the client sent it
            objects.append({"name": fn.get("name"), self.arguments_key: arguments if arguments is not None else {}})
        f = self.family
        if f.calls_as_array:
            return f.call_prefix + json.dumps(objects, ensure_ascii=False) + f.call_suffix
        return "\n".join(f.call_prefix + json.dumps(o, ensure_ascii=False) + f.call_suffix for o in objects)


def _join(content, written_calls: str) -> str:
    """An assistant turn's text followed by its calls as the family writes them."""
    content = (content or "").strip()
    return f"{content}\n{written_calls}" if content else written_calls


def _text(content) -> str:
    return content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)


def _fold_system(messages: list[dict]) -> list[dict]:
    """The messages without system ones, whose text opens the first user turn instead, as Gemma 3's
    own template folds it (llama.cpp folds the same way for templates that refuse the role)."""
    system = "\n\n".join(_text(m.get("content") or "") for m in messages if m.get("role") == "system")
    if not system:
        return messages
    rest = [m for m in messages if m.get("role") != "system"]
    for i, m in enumerate(rest):
        if m.get("role") == "user":
            rest[i] = {**m, "content": f"{system}\n\n{_text(m.get('content') or '')}"}
            return rest
    return [{"role": "user", "content": system}, *rest]


def _template_variables(src: str) -> set[str]:
    """The variables the template reads from its caller (an unparsable one reads none: it fails
    when rendered, with its own error)."""
    env = jinja2.Environment(extensions=list(EXTENSIONS))
    try:
        return jinja2.meta.find_undeclared_variables(env.parse(src))
    except jinja2.TemplateSyntaxError:
        return set()


def _takes_system_role(src: str) -> bool:
    """Whether a system message's text reaches the prompt, probed by rendering one as llama.cpp
    probes its templates' capabilities: Gemma 2's template raises "System role not supported"."""
    if not src:
        return True
    probe, user = "tensorsharp system probe", {"role": "user", "content": "hi"}
    try:
        template = ChatTemplate(src)
        template.render([user])
    except TemplateError:
        return True  # it fails without a system message too: the probe cannot tell
    try:
        return probe in template.render([{"role": "system", "content": probe}, user])
    except TemplateError:
        return False


def detect_family(metadata: dict, template_source: str) -> str:
    src = template_source
    if harmony.CHANNEL in src:
        return "harmony"
    if hermes.OPEN in src:
        return "hermes"
    if llama3.PYTHON_TAG in src or "<|start_header_id|>" in src:
        return "llama3"
    if mistral.TOOL_CALLS in src:
        return "mistral"
    if granite.TOOL_CALL in src:
        return "granite"
    if phi4.TOOLS_OPEN in src and _MESSAGE_TOOLS.search(src):
        return "phi4"
    arch = str(metadata.get("general.architecture", ""))
    if arch in _HERMES_ARCHITECTURES:
        return "hermes"
    if arch.startswith("gemma") and not _TOOLS_VARIABLE.search(src):
        return "gemma"
    return "generic"


def chat_format(metadata: dict, template_source: str | None, tool_format: str | None = None) -> ChatFormat:
    """See tensorsharp.chat.output.chat_format. template_source is the file's template (None or
    empty when it has none: the built-in template renders no tools)."""
    src = template_source or ""
    family = tool_parsers.family(tool_format or detect_family(metadata, src))
    markers = tuple(pair for pair in (THINK, MISTRAL_THINK) if pair[0] in src or pair[1] in src)
    variables = _template_variables(src)
    switches = tuple(name for name in THINKING_VARIABLES if name in variables)
    # Tools read only from a message's field reach the prompt only if the system message carries them.
    message_tools = bool(_MESSAGE_TOOLS.search(src)) and "tools" not in variables
    return ChatFormat(family=family,
                      template_renders_tools=bool(_TOOLS_VARIABLE.search(src)) or "xml_tools" in variables,
                      supports_thinking=bool(markers or switches or family.channels),
                      reasoning_markers=markers or (THINK,),
                      thinking_variables=switches,
                      answer_markers=GRANITE_ANSWER if "".join(GRANITE_ANSWER) in src else None,
                      system_role=_takes_system_role(src),
                      xml_tools="xml_tools" in variables,
                      message_tools=message_tools)
