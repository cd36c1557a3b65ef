"""API types and pure conversions, one module per dialect: openai, ollama, webui."""
