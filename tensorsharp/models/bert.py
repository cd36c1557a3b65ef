"""bert: learned positions and token types, post-norm blocks with biases, GELU FFN (BertModel)."""
from tensorsharp.models.encoder import EncoderArchitecture


class Bert(EncoderArchitecture):
    name = "bert"
