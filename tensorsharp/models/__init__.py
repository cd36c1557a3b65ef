"""Model architectures, registered by GGUF `general.architecture`."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from tensorsharp.errors import GGUFError, TensorSharpError
from tensorsharp.models.base import Architecture, Transformer
from tensorsharp.models.bert import Bert
from tensorsharp.models.encoder import Encoder, EncoderArchitecture
from tensorsharp.models.gemma2 import Gemma2
from tensorsharp.models.gemma3 import Gemma3
from tensorsharp.models.gpt_oss import GptOss
from tensorsharp.models.granite import Granite
from tensorsharp.models.llama import Llama
from tensorsharp.models.nomic_bert import NomicBert
from tensorsharp.models.olmo2 import Olmo2
from tensorsharp.models.phi3 import Phi3
from tensorsharp.models.qwen2 import Qwen2
from tensorsharp.models.qwen2moe import Qwen2Moe
from tensorsharp.models.qwen3 import Qwen3
from tensorsharp.models.qwen3moe import Qwen3Moe
from tensorsharp.models.smollm3 import SmolLM3

ARCHITECTURES: dict[str, type[Architecture]] = {
    cls.name: cls for cls in (Llama, Qwen2, Qwen2Moe, Qwen3, Qwen3Moe, Gemma2, Gemma3, Phi3, SmolLM3, Granite, Olmo2,
                                     GptOss)}
# Bidirectional encoders: they embed and generate nothing.
ENCODERS: dict[str, type[EncoderArchitecture]] = {cls.name: cls for cls in (Bert, NomicBert)}


def is_encoder(metadata: dict) -> bool:
    return metadata.get("general.architecture") in ENCODERS


def load_model(gguf) -> Transformer:
    """The native model of an open GGUF file, by its general.architecture."""
    arch = gguf.metadata.get("general.architecture")
    if arch in ENCODERS:
        raise GGUFError(f"{arch} is an encoder that only embeds; load it with load_encoder")
    if arch not in ARCHITECTURES:
        raise GGUFError(f"unsupported architecture {arch!r} (supported: "
                        f"{', '.join(sorted([*ARCHITECTURES, *ENCODERS]))})")
    return Transformer(gguf, ARCHITECTURES[arch])


def load_encoder(gguf) -> Encoder:
    """The native encoder of an open GGUF file whose general.architecture is one of ENCODERS."""
    arch = gguf.metadata.get("general.architecture")
    if arch not in ENCODERS:
        raise GGUFError(f"architecture {arch!r} is not an encoder (encoders: {', '.join(sorted(ENCODERS))})")
    return Encoder(gguf, ENCODERS[arch])


@contextmanager
def reading(path) -> None:
    """Around everything that reads a model file: the file is untrusted input, so whatever its
    contents make fail (an absurd count, a zero width, a value of the wrong type) is a GGUFError
    naming the file, never a stray ValueError or ZeroDivisionError."""
    try:
        yield
    except GGUFError:
        raise
    except (TensorSharpError, ArithmeticError, LookupError, ValueError, TypeError, AttributeError,
            MemoryError) as e:
        detail = str(e) if isinstance(e, TensorSharpError) else f"{type(e).__name__}: {e}"
        raise GGUFError(f"{Path(path).name}: {detail}") from e
