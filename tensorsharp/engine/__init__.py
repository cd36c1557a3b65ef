"""The engine: KV cache, batched steps, sampling, scheduling."""
