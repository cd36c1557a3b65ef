"""The chat layer: templates, tool calls, reasoning, structured output."""
