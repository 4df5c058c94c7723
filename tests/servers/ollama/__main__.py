"""``python -m tests.servers.ollama --port 11434 [--real-model]``: the fake Ollama server by hand."""

from tests.servers.ollama.server import main

main()
