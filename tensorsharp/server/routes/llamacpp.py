"""llama-server's utility routes: /tokenize and /detokenize with the served model's tokenizer."""
from __future__ import annotations

from flask import Blueprint

from tensorsharp.server.app import body, json_response, state
from tensorsharp.server.errors import ApiError
from tensorsharp.server.protocol import llamacpp as lc

bp = Blueprint("llamacpp", __name__)


def _served(name: str | None):
    st = state()
    return st.require_model(name or st.default)


@bp.post("/tokenize")
def tokenize():
    req = lc.parse_tokenize(body())
    tok = _served(req.model).tokenizer
    ids = tok.encode(req.content, add_special=req.add_special, parse_special=req.parse_special)
    pieces = [tok.token_to_piece(i, special=True) for i in ids] if req.with_pieces else None
    return json_response(lc.tokens(ids, pieces))


@bp.post("/detokenize")
def detokenize():
    name, ids = lc.parse_detokenize(body())
    served = _served(name)
    try:
        served.check_ids(ids)
    except ValueError as e:
        raise ApiError(400, str(e), param="tokens") from None
    return json_response({"content": served.tokenizer.decode(ids, special=True)})
