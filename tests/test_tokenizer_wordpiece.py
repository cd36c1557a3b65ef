"""WordPiece from a converted BERT file (phantom-space vocabulary) gives the ids HF's
BertTokenizerFast gives on the same vocab.txt."""
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers", minversion="5")

from transformers import BertTokenizerFast  # noqa: E402

from tensorsharp.gguf import GGUFFile  # noqa: E402
from tensorsharp.testing import llama_convert, tiny_encoders  # noqa: E402
from tensorsharp.tokenizer.wordpiece import WordPiece  # noqa: E402

pytestmark = pytest.mark.hf

TEXTS = [
    "Hello world", "Hello, World!", "  leading and   inner   spaces\t\nnewlines ", "unaffable tokenization",
    "Café naïve résumé façade", "ÅNGSTRÖM über", "我想在apple工作1314151天", "emoji 😁 and ☕ here",
    "3.14 ... 3,000,000 $50 #tag @user a+b=c", "it's don't 'quoted' \"double\"", "[CLS] is text here, [SEP] too",
    "pneumonoultramicroscopicsilicovolcanoconiosis" * 3, "", "Ünïcödé-dash—em–en", "Hello\u200bzero width",
    "нещо на Български", "x" * 150,
]


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    _, path = tiny_encoders.converted("bert")
    ours = WordPiece.from_metadata(GGUFFile(path).metadata)
    d = tmp_path_factory.mktemp("bert-tokenizer")
    llama_convert.write_wordpiece_tokenizer(d)
    return ours, BertTokenizerFast.from_pretrained(d)


@pytest.mark.parametrize("text", TEXTS)
def test_ids_equal_hf(tokenizers, text):
    ours, hf = tokenizers
    want = hf(text, add_special_tokens=True)["input_ids"]
    if len(text) > 100 and " " not in text:
        # HF gives up on a word past 100 characters ([UNK]); llama.cpp, and so we, match it whole.
        want = hf(text[:90], add_special_tokens=True)["input_ids"]
        assert ours.encode(text[:90], parse_special=True) == want
        return
    # HF reads "[CLS]" in the text as the token, as llama.cpp does with parse_special.
    assert ours.encode(text, parse_special=True) == want
    assert ours.encode(text, add_special=False, parse_special=True) == want[1:-1]


def test_special_tokens_only_when_parsed(tokenizers):
    ours, _ = tokenizers
    assert ours.encode("[CLS] hi", add_special=False, parse_special=True)[0] == ours.cls_id
    assert ours.cls_id not in ours.encode("[CLS] hi", add_special=False)


def test_decode_joins_pieces(tokenizers):
    ours, _ = tokenizers
    assert ours.decode(ours.encode("unaffable tokenization")) == "unaffable tokenization"
