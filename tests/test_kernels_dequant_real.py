"""Scalar dequantization of real tensors from the three models equals gguf.quants bit for bit."""
import numpy as np
import pytest
from gguf.constants import GGMLQuantizationType
from gguf.quants import dequantize as gguf_dequantize

from tensorsharp import kernels
from tensorsharp.gguf import GGUFFile
from tensorsharp.testing.models import model_path

MODELS = ["smollm2-135m", "gemma3-270m", "qwen2.5-coder-0.5b"]
MAX_ROWS = 64  # a slice of each tensor keeps gguf's numpy path quick


def _samples(name):
    """Up to two tensors of every type in the file, as (tensor name, type, raw rows, row length)."""
    with GGUFFile(model_path(name)) as f:
        seen = {}
        for t in f.tensors.values():
            if t.type_name in kernels.SUPPORTED_TYPES and len(seen.setdefault(t.type_name, [])) < 2:
                rows = np.array(f.rows(t.name)[:MAX_ROWS])
                seen[t.type_name].append((t.name, t.type_name, rows, int(t.shape[0])))
    return [s for group in seen.values() for s in group]


@pytest.mark.parametrize("name", MODELS)
def test_real_tensors_dequantize_like_gguf(name):
    samples = _samples(name)
    assert {s[1] for s in samples} >= {"F32"}
    for tname, type_name, rows, cols in samples:
        ours = kernels.dequantize(rows, type_name, rows.shape[0] * cols, isa="scalar")
        ref = gguf_dequantize(rows, GGMLQuantizationType[type_name]).reshape(-1).astype(np.float32)
        assert np.array_equal(ours.view(np.uint32), ref.view(np.uint32)), tname
