"""/api/create bodies: the current fields, the legacy Modelfile text, and what is refused."""
import pytest

from tensorsharp.server.errors import ApiError
from tensorsharp.server.protocol.modelfile import parse_create, parse_modelfile


def test_modelfile_commands_multiline_values_and_typed_parameters():
    text = ('# made by hand\nFROM qwen2.5-coder\n\nsystem """You help.\n\nBriefly."""\n'
            'TEMPLATE """{{ messages }}"""\nPARAMETER temperature 0.2\nPARAMETER num_ctx 2048\n'
            'PARAMETER stop "<|im_end|>"\nPARAMETER stop ###\nPARAMETER penalize_newline false\nLICENSE MIT\n')
    assert parse_modelfile(text) == {
        "from": "qwen2.5-coder", "system": "You help.\n\nBriefly.", "template": "{{ messages }}",
        "parameters": {"temperature": 0.2, "num_ctx": 2048, "stop": ["<|im_end|>", "###"],
                       "penalize_newline": False}}


def test_fields_win_over_the_modelfile_and_name_is_the_legacy_model():
    req = parse_create({"name": "mine", "modelfile": "FROM a\nSYSTEM old\nPARAMETER top_k 5\nPARAMETER seed 1",
                        "system": "new", "parameters": {"seed": 7}, "stream": False})
    assert (req.model, req.source, req.system, req.parameters, req.stream) == (
        "mine", "a", "new", {"top_k": 5, "seed": 7}, False)
    assert parse_create({"model": "m", "from": "/models/x.gguf"}).source == "/models/x.gguf"


@pytest.mark.parametrize("body, words", [
    ({"from": "a"}, "'model' is required"),
    ({"model": "m"}, "'from' or 'files' is required"),
    ({"model": "m", "modelfile": "FROM a\nADAPTER x.bin"}, "ADAPTER"),
    ({"model": "m", "modelfile": 'FROM a\nSYSTEM """never closed'}, "never closes"),
    ({"model": "m", "modelfile": "FROM a\nPARAMETER temperature"}, "no value"),
    ({"model": "m", "from": "a", "adapters": {"x.gguf": "sha256:00"}}, "adapters"),
    ({"model": "m", "files": ["sha256:00"]}, "'files' must map"),
    ({"model": "m", "from": "a", "parameters": [1]}, "'parameters' must be an object"),
])
def test_refused(body, words):
    with pytest.raises(ApiError) as e:
        parse_create(body)
    assert e.value.status == 400 and words in e.value.message
