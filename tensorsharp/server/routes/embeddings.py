"""Embedding routes: /v1/embeddings (OpenAI), /api/embed and the legacy /api/embeddings (Ollama)."""
from __future__ import annotations

from flask import Blueprint, request

from tensorsharp.server.app import body, json_response, state
from tensorsharp.server.embedding import embed
from tensorsharp.server.protocol import embeddings as em

bp = Blueprint("embeddings", __name__)


@bp.post("/v1/embeddings")
def openai_embeddings():
    req = em.parse_openai(body())
    served = state().require_model(req.model)
    vectors, tokens, _ = embed(served, req, request.environ)
    return json_response(em.openai_response(served.name, vectors, req.encoding, tokens))


@bp.post("/api/embed")
def ollama_embed():
    req = em.parse_ollama(body())
    served = state().require_model(req.model)
    vectors, tokens, took = embed(served, req, request.environ)
    return json_response(em.ollama_response(req.model, vectors, tokens, took, 0))


@bp.post("/api/embeddings")
def ollama_embeddings():
    req = em.parse_ollama_legacy(body())
    served = state().require_model(req.model)
    vectors, _, _ = embed(served, req, request.environ)
    return json_response(em.ollama_legacy_response(vectors[0]))
