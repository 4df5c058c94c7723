"""ollama-dist: send routine LLM work to a local model, keep reasoning on Claude."""

__version__ = "0.1.0"
