"""GGUF files: a bounds-checked reader over mmap and the tensor type table."""
