"""Helpers shared by tests and tools: random quantized blocks, numpy oracles, tiny GGUF files."""
