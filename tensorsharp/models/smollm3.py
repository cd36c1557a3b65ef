"""smollm3: Llama layout in which every fourth layer attends without RoPE."""
from tensorsharp.models.base import Architecture, HParams, LayerParams

# llama.cpp fixes the step (the GGUF carries none): layers 3, 7, 11, ... skip RoPE.
NO_ROPE_LAYER_STEP = 4


class SmolLM3(Architecture):
    name = "smollm3"
    rope_neox = False  # the converter permutes Q/K rows as for llama

    def layer_params(self, hp: HParams, layer: int) -> LayerParams:
        use_rope = (layer + 1) % NO_ROPE_LAYER_STEP != 0
        return super().layer_params(hp, layer)._replace(use_rope=use_rope)
