"""Chat templates of real models that neither llama.cpp's sources nor any file here carries,
written in the shape their model cards document, for the tests of the families that read them."""

# Phi-4-mini-instruct: every message as <|role|>text<|end|>; the tools come from the system
# message's own `tools` field (a JSON text), not from the `tools` variable.
PHI4_MINI = ("{% for message in messages %}{% if message['role'] == 'system' and 'tools' in message and "
             "message['tools'] is not none %}{{ '<|' + message['role'] + '|>' + message['content'] + '<|tool|>' + "
             "message['tools'] + '<|/tool|>' + '<|end|>' }}{% else %}{{ '<|' + message['role'] + '|>' + "
             "message['content'] + '<|end|>' }}{% endif %}{% endfor %}{% if add_generation_prompt %}"
             "{{ '<|assistant|>' }}{% endif %}")

BY_NAME = {"microsoft-Phi-4-mini-instruct": PHI4_MINI}
