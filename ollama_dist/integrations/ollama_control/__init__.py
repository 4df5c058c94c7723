"""integrations/ollama_control: see CONTRIBUTING.md for the layout."""
