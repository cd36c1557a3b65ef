"""Loading a GGUF into the native model: what is required, what is refused."""
import pytest

from tensorsharp.errors import GGUFError
from tensorsharp.gguf import GGUFFile
from tensorsharp.models import load_model
from tensorsharp.testing.models import model_path


@pytest.fixture
def smol_file():
    with GGUFFile(model_path("smollm2-135m")) as f:
        yield f


def test_unsupported_tensor_is_refused(smol_file):
    # A layer-norm bias: no slot applies it (an output-projection bias has one now, as in llama.cpp).
    smol_file.tensors["blk.0.attn_norm.bias"] = smol_file.tensors["blk.0.attn_norm.weight"]
    with pytest.raises(GGUFError, match="attn_norm.bias"):
        load_model(smol_file)


def test_missing_required_tensor_is_refused(smol_file):
    del smol_file.tensors["blk.3.ffn_down.weight"]
    with pytest.raises(GGUFError, match="blk.3.ffn_down.weight"):
        load_model(smol_file)


def test_unknown_architecture_is_refused(smol_file):
    smol_file.metadata["general.architecture"] = "mamba9"
    with pytest.raises(GGUFError, match="mamba9"):
        load_model(smol_file)


def test_unknown_rope_scaling_is_refused(smol_file):
    smol_file.metadata["llama.rope.scaling.type"] = "dynamic"
    with pytest.raises(GGUFError, match="dynamic"):
        load_model(smol_file)


def test_fused_tensor_of_the_wrong_height_is_refused(smol_file):
    # A phi3 file whose fused gate/up holds n_ff rows instead of 2 * n_ff.
    smol_file.metadata = {k.replace("llama.", "phi3.", 1): v for k, v in smol_file.metadata.items()}
    smol_file.metadata["general.architecture"] = "phi3"
    for layer in range(smol_file.metadata["phi3.block_count"]):
        del smol_file.tensors[f"blk.{layer}.ffn_gate.weight"]
    with pytest.raises(GGUFError, match="blk.0.ffn_up.weight"):
        load_model(smol_file)


def test_rope_factors_of_the_wrong_length_are_refused(smol_file):
    smol_file.tensors["rope_freqs.weight"] = smol_file.tensors["blk.0.attn_norm.weight"]
    with pytest.raises(GGUFError, match="rope_freqs.weight"):
        load_model(smol_file)
