"""Pre-tokenizer split rules of byte-level BPE models, chosen by tokenizer.ggml.pre, as llama.cpp applies them.

A rule is a list of regexes run in turn; each one splits every piece the previous one left, and
both its matches and the text between them become pieces. Regexes that name Unicode categories
run, as in llama.cpp, on a "collapsed" copy of the text where each non-ASCII code point is one
marker character for its category, so Python's re and std::regex see the same string and match
it with the same leftmost-alternative, backtracking rules. llama.cpp hand-codes a few of these
regexes (gpt2, llama3, qwen2); its hand-written loops split exactly like the regexes do.
"""
from __future__ import annotations

import re

import regex as _uregex  # Unicode properties only: llama.cpp generated its tables with this module

_MARKERS = {"N": "\xd1", "L": "\xd2", "P": "\xd3", "M": "\xd4", "S": "\xd5"}
_OTHER = "\xd0"        # a category no regex can name (controls, separators that are not spaces)
_SPACE_MARK = "\x0b"  # non-ASCII whitespace becomes a vertical tab, which \s matches
_SPACE_BODY = r"\t\n\x0b\x0c\r "  # \s of std::regex on one byte: the C locale's isspace
_PROPS = {k: _uregex.compile(r"\p{%s}" % k) for k in _MARKERS}
_IS_SPACE = _uregex.compile(r"\s")


def _class_body(cat: str) -> str:
    """Inside of a character class for \\p{cat}: its marker plus its ASCII members."""
    members = "".join(re.escape(chr(c)) for c in range(128) if _PROPS[cat].match(chr(c)))
    return _MARKERS[cat] + members


# llama.cpp folds the letter subcategories into "letter" on the collapsed text.
_CLASS = {name: _class_body(name[0]) for name in ("N", "L", "P", "M", "S", "Lu", "Ll", "Lt", "Lm", "Lo")}


class _Collapse(dict):
    """str.translate table: code point -> its collapsed character, computed once per code point."""

    def __missing__(self, cp: int) -> str:
        ch = chr(cp)
        if cp < 128:
            out = ch
        elif _IS_SPACE.match(ch):
            out = _SPACE_MARK
        else:
            out = next((_MARKERS[k] for k, p in _PROPS.items() if p.match(ch)), _OTHER)
        self[cp] = out
        return out


class _Widen(dict):
    """str.translate table for regexes without categories: only non-ASCII whitespace changes."""

    def __missing__(self, cp: int) -> str:
        ch = chr(cp)
        out = _SPACE_MARK if cp >= 128 and _IS_SPACE.match(ch) else ch
        self[cp] = out
        return out


_COLLAPSE = _Collapse()
_WIDEN = _Widen()


def _translate(expr: str) -> tuple[re.Pattern, bool]:
    """llama.cpp regex -> (Python pattern over the collapsed or widened text, uses collapsed)."""
    collapsed = "\\p{" in expr
    out: list[str] = []
    inside = False
    i = 0
    while i < len(expr):
        c = expr[i]
        if c == "\\" and i + 1 < len(expr):
            nxt = expr[i + 1]
            body = None
            if nxt == "p" and expr.startswith("{", i + 2):
                end = expr.index("}", i)
                name = expr[i + 3:end]
                if name not in _CLASS:
                    raise ValueError(f"unsupported Unicode category \\p{{{name}}} in {expr!r}")
                body, i = _CLASS[name], end + 1
            elif nxt in "sd":  # Python's \s and \d are Unicode-wide; std::regex's are ASCII
                body, i = (_SPACE_BODY if nxt == "s" else "0-9"), i + 2
            elif nxt == "S" and not inside:
                out.append("[^" + _SPACE_BODY + "]")
                i += 2
                continue
            else:
                out.append(expr[i:i + 2])
                i += 2
                continue
            out.append(body if inside else "[" + body + "]")
            continue
        if c == "[" and not inside:
            inside = True
        elif c == "]" and inside:
            inside = False
        out.append(c)
        i += 1
    return re.compile("".join(out)), collapsed


class SplitRules:
    """One tokenizer.ggml.pre value: its regexes and the tokenizer flags llama.cpp ties to it."""

    def __init__(self, exprs: tuple[str, ...], clean_spaces: bool = True, ignore_merges: bool = False,
                 add_bos: bool = False, no_bos: bool = False):
        self.exprs = exprs
        self.clean_spaces = clean_spaces    # decode removes " ." style spaces
        self.ignore_merges = ignore_merges  # a piece found whole in the vocab is one token
        self.add_bos = add_bos              # default for tokenizer.ggml.add_bos_token
        self.no_bos = no_bos                # the model has no BOS token by default
        self._patterns = [_translate(e) for e in exprs]

    def split(self, text: str) -> list[str]:
        """text -> pieces, in order; their concatenation is text."""
        if not text:
            return []
        collapsed = text.translate(_COLLAPSE) if any(c for _, c in self._patterns) else None
        widened = text.translate(_WIDEN) if not all(c for _, c in self._patterns) else None
        spans = [(0, len(text))]
        for pattern, use_collapsed in self._patterns:
            subject = collapsed if use_collapsed else widened
            out = []
            for start, end in spans:
                pos = start
                for m in pattern.finditer(subject, start, end):
                    s, e = m.span()
                    if s > pos:
                        out.append((pos, s))
                    out.append((s, e))
                    pos = e
                if pos < end:
                    out.append((pos, end))
            spans = out
        return [text[s:e] for s, e in spans]


# Regexes as llama.cpp has them (llama-vocab.cpp, llm_tokenizer_bpe); (?i:...) was already spelled out there.
_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
_LLAMA3 = (r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
           r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2 = (r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
          r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_PORO = r" ?[^(\s|.,!?…。，、।۔،)]+"
_CJK = "[一-龥ࠀ-一가-퟿]+"
_DEFAULT = (r"[\p{P}\$\+<=>\^~\|]+", _GPT2, r"\p{N}+", "[0-9][0-9][0-9]")
_STARCODER = (r"\p{N}", _GPT2)

# tokenizer.ggml.pre -> rules, with llama.cpp's flags for each name.
_RULES: dict[str, SplitRules] = {}


def _add(names: str, exprs: tuple[str, ...], **flags) -> None:
    rules = SplitRules(exprs, **flags)
    for name in names.split():
        _RULES[name] = rules


_add("default", _DEFAULT)
_add("llama3 llama-v3 llama-bpe falcon3 falcon-h1 pixtral midm-2.0 lfm2 jina-v5-nano", (_LLAMA3,),
     ignore_merges=True, add_bos=True)
_add("dbrx smaug-bpe", (_LLAMA3,))
_add("chatglm-bpe", (_LLAMA3,), no_bos=True)
_add("glm4 glm5", (_LLAMA3,), no_bos=True, ignore_merges=True)
_add("deepseek-coder", ("[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", _CJK, r"\p{N}"), clean_spaces=False)
_add("falcon", (r"[\p{P}\$\+<=>\^~\|`]+", _GPT2, "[0-9][0-9][0-9]"))
_add("gpt-2 phi-2 jina-es jina-de gigachat jina-v2-es jina-v2-de a.x-4.0 mellum modern-bert mpt olmo jais "
     "exaone4", (_GPT2,))
_add("trillion granite-docling", (_GPT2,), clean_spaces=False)
_add("starcoder refact codeshell exaone minerva-7b mellum2", _STARCODER)
_add("smollm command-r", _STARCODER, clean_spaces=False)
_add("qwen2 deepseek-r1-qwen kormo f2llmv2 hunyuan", (_QWEN2,), clean_spaces=False)
_add("stablelm2 megrez", (_QWEN2,))
_add("bloom gpt3-finnish", (_PORO,))
_add("poro-chat", (_PORO,), clean_spaces=False)
_add("viking", (_PORO, r"\p{N}"), clean_spaces=False)


def rules_for(pre: str) -> SplitRules | None:
    """The rules for a tokenizer.ggml.pre value, or None when we do not know it."""
    return _RULES.get(pre)


def supported() -> list[str]:
    return sorted(_RULES)
