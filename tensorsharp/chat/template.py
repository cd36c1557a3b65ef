"""Chat templates: the GGUF's Jinja template run in a sandbox, or a built-in one for files without."""
from __future__ import annotations

import contextvars
import json
import time
from dataclasses import dataclass
from datetime import datetime

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

from tensorsharp.errors import TensorSharpError


class TemplateError(TensorSharpError):
    """A chat template failed to render (raised by the template or refused by the sandbox)."""


class TemplateBudgetError(TemplateError):
    """A chat template ran longer or wrote more than a render may (the template's fault, not the request's)."""


# A template is untrusted code: one render may take this long and write this much.
RENDER_SECONDS = 2.0
RENDER_CHARS = 16 << 20
_deadline: contextvars.ContextVar[float] = contextvars.ContextVar("template_deadline", default=float("inf"))


# Gemma's turn format: the system prompt joins the first user turn; the assistant is "model".
GEMMA_TEMPLATE = (
    "{%- set ns = namespace(system='') -%}"
    "{%- for m in messages -%}"
    "{%- if m.role == 'system' -%}{%- set ns.system = ns.system + m.content + '\\n\\n' -%}"
    "{%- else -%}"
    "{{ '<start_of_turn>' + ('model' if m.role == 'assistant' else m.role) + '\\n' }}"
    "{%- if m.role == 'user' -%}{{ ns.system }}{%- set ns.system = '' -%}{%- endif -%}"
    "{{ (m.content | trim) + '<end_of_turn>\\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\\n' }}{%- endif -%}"
)
CHATML_TEMPLATE = (
    "{%- for m in messages -%}"
    "{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)


@dataclass(frozen=True)
class ImageFormat:
    """How an image's embeddings sit in a prompt: the text around them, and whether the image's
    rows attend to each other (all of them) or causally like text."""
    before: str = ""
    after: str = ""
    bidirectional: bool = False


# By projector type. Gemma 3: HF's Gemma3Processor (and Ollama) put "\n\n<start_of_image>" before
# the embeddings and "<end_of_image>\n\n" after them, the form the model was trained on; llama.cpp's
# mtmd leaves out the blank lines. HF and llama.cpp both let an image's rows see the whole image.
# LLaVA-style ("mlp") projectors put the embeddings in place of the image with nothing around them.
IMAGE_FORMATS = {"gemma3": ImageFormat("\n\n<start_of_image>", "<end_of_image>\n\n", bidirectional=True)}


def image_format(projector_type: str) -> ImageFormat:
    return IMAGE_FORMATS.get(projector_type, ImageFormat())


def _raise(message):
    raise TemplateError(f"chat template: {message}")


def _tojson(value, indent=None, ensure_ascii=False, sort_keys=False, separators=None):
    return json.dumps(value, indent=indent, ensure_ascii=ensure_ascii, sort_keys=sort_keys,
                      separators=separators)


def _check_time() -> None:
    if time.monotonic() > _deadline.get():
        raise TemplateBudgetError(f"the chat template ran longer than {RENDER_SECONDS:g} s")


class _BudgetedSandbox(ImmutableSandboxedEnvironment):
    """The sandbox, looking at the clock on every call and attribute or item access: a loop that
    does anything passes through one of them, so a looping template cannot hold a worker for long."""

    def call(__self, __context, __obj, *args, **kwargs):  # noqa: N805 (jinja's own signature)
        _check_time()
        return super().call(__context, __obj, *args, **kwargs)

    def getattr(self, obj, attribute):
        _check_time()
        return super().getattr(obj, attribute)

    def getitem(self, obj, argument):
        _check_time()
        return super().getitem(obj, argument)

    # "x" * 10**9 is one operation: sizes are checked before it allocates.
    intercepted_binops = frozenset(["*", "**"])

    def call_binop(self, context, operator, left, right):
        if operator == "**" and isinstance(right, int) and abs(right) > 64 and not -1 <= left <= 1:
            raise TemplateBudgetError("the chat template raised a number to a power above 64")
        if operator == "*":
            seq, n = (left, right) if isinstance(right, int) else (right, left)
            if isinstance(seq, (str, list, tuple)) and isinstance(n, int) and len(seq) * n > RENDER_CHARS:
                raise TemplateBudgetError(f"the chat template built a sequence of more than {RENDER_CHARS} items")
        return super().call_binop(context, operator, left, right)


class GenerationTag(jinja2.ext.Extension):
    """HF's {% generation %}…{% endgeneration %}, which marks the assistant's text for training
    masks (SmolLM3's own template uses it): rendering keeps what it wraps."""

    tags = {"generation"}

    def parse(self, parser):
        next(parser.stream)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


# What a chat template may use beyond plain Jinja, as HF's apply_chat_template allows.
EXTENSIONS = ("jinja2.ext.loopcontrols", GenerationTag)


def _environment() -> ImmutableSandboxedEnvironment:
    env = _BudgetedSandbox(trim_blocks=True, lstrip_blocks=True, extensions=list(EXTENSIONS))
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env


def _with_object_arguments(message: dict) -> dict:
    """Templates expect tool-call arguments as objects; OpenAI clients send JSON strings."""
    calls = message.get("tool_calls")
    if not calls:
        return message
    fixed = []
    for call in calls:
        fn = call.get("function") if isinstance(call, dict) else None
        if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
            try:
                fn = {**fn, "arguments": json.loads(fn["arguments"])}
            except json.JSONDecodeError:
                pass  # leave text the model or client produced as it is
            call = {**call, "function": fn}
        fixed.append(call)
    return {**message, "tool_calls": fixed}


def template_source(metadata: dict) -> str:
    """The chat template text of a model: the file's, else the built-in one of its family."""
    source = metadata.get("tokenizer.chat_template")
    if source:
        return source
    return GEMMA_TEMPLATE if str(metadata.get("general.architecture", "")).startswith("gemma") else CHATML_TEMPLATE


class ChatTemplate:
    def __init__(self, source: str, bos_token: str = "", eos_token: str = "", builtin: bool = False):
        self.source = source
        self.builtin = builtin
        self.bos_token = bos_token
        self.eos_token = eos_token
        try:
            self._template = _environment().from_string(source)
        except jinja2.TemplateError as e:
            raise TemplateError(f"chat template does not parse: {e}") from None

    @classmethod
    def for_model(cls, metadata: dict, tokenizer) -> "ChatTemplate":
        """The file's template, else the built-in one of its architecture family."""
        builtin = not metadata.get("tokenizer.chat_template")
        source = template_source(metadata)
        bos = tokenizer.token_text(tokenizer.bos_id) if tokenizer.bos_id is not None else ""
        eos = tokenizer.token_text(tokenizer.eos_id) if tokenizer.eos_id is not None else ""
        return cls(source, bos, eos, builtin)

    def render(self, messages: list[dict], add_generation_prompt: bool = True, tools=None, **variables) -> str:
        """variables: more template variables (a thinking switch such as enable_thinking); one
        that is None is left undefined, so the template's default holds."""
        context = {"messages": [_with_object_arguments(m) for m in messages],
                   "add_generation_prompt": add_generation_prompt,
                   "bos_token": self.bos_token, "eos_token": self.eos_token}
        if tools:
            context["tools"] = tools
        context.update((k, v) for k, v in variables.items() if v is not None)
        token = _deadline.set(time.monotonic() + RENDER_SECONDS)
        try:
            text = self._render(context)
        except TemplateError:
            raise
        except jinja2.exceptions.SecurityError as e:
            raise TemplateError(f"chat template tried something the sandbox forbids: {e}") from None
        except Exception as e:  # a template is untrusted input: any failure is its own
            raise TemplateError(f"chat template failed: {type(e).__name__}: {e}") from None
        finally:
            _deadline.reset(token)
        return text if self.builtin else self._continue_final(text, messages, add_generation_prompt)

    def _render(self, context: dict) -> str:
        parts, size = [], 0
        for part in self._template.generate(**context):
            size += len(part)
            if size > RENDER_CHARS:
                raise TemplateBudgetError(f"the chat template wrote more than {RENDER_CHARS} characters")
            _check_time()
            parts.append(part)
        return "".join(parts)

    @staticmethod
    def _continue_final(text: str, messages: list[dict], add_generation_prompt: bool) -> str:
        """Without a generation prompt, a final assistant message is a prefix the model continues
        (as llama.cpp does with a file's template): drop the end-of-turn the template closed it with."""
        if add_generation_prompt or not messages or messages[-1].get("role") != "assistant":
            return text
        content = messages[-1].get("content")
        if not isinstance(content, str) or not content:
            return text
        at = text.rfind(content)
        return text[:at + len(content)] if at >= 0 else text
