"""llama-server's dialect for its utility routes: /tokenize and /detokenize requests and answers."""
from __future__ import annotations

from dataclasses import dataclass

from tensorsharp.server.errors import ApiError
from tensorsharp.server.protocol.fields import Fields


@dataclass
class TokenizeRequest:
    model: str | None     # optional: the one served model answers
    content: str
    add_special: bool     # insert BOS (and what else the model adds), as llama-server: off by default
    parse_special: bool   # control-token text becomes the control token: on by default
    with_pieces: bool


def parse_tokenize(body: dict) -> TokenizeRequest:
    f = Fields(body)
    return TokenizeRequest(f.str("model"), f.str("content", required=True), f.bool("add_special", False),
                           f.bool("parse_special", True), f.bool("with_pieces", False))


def parse_detokenize(body: dict) -> tuple[str | None, list[int]]:
    f = Fields(body)
    tokens = f.list("tokens", [])
    if not all(isinstance(t, int) and not isinstance(t, bool) for t in tokens):
        raise ApiError(400, "'tokens' must be an array of token ids", param="tokens")
    return f.str("model"), tokens


def piece(raw: bytes) -> str | list[int]:
    """A token's text, or its bytes when they are not valid UTF-8 alone (part of a character)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return list(raw)


def tokens(ids: list[int], pieces: list[bytes] | None) -> dict:
    if pieces is None:
        return {"tokens": ids}
    return {"tokens": [{"id": i, "piece": piece(p)} for i, p in zip(ids, pieces)]}
