"""`python -m ollama_dist.cli`: the same app as the `ollama-dist` script."""

from ollama_dist.cli import main

main()
