"""Loopback fakes of the services the package talks to (Ollama, the Anthropic API)."""
