"""The HTTP server: Ollama, OpenAI and web UI dialects over one engine scheduler (Flask + gevent)."""
