"""Model backends: ``api`` (OpenAI, Anthropic, OpenAI-compatible servers) and ``local`` (transformers)."""
