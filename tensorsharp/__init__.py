"""tensorsharp: GGUF models on the CPU with our own kernels, served over Ollama and OpenAI APIs."""


def __getattr__(name):
    # Model pulls in the native kernels; importing the package for its CLI or store must not.
    if name == "Model":
        from tensorsharp.llm import Model
        return Model
    raise AttributeError(name)
