"""integrations/claude_code: see CONTRIBUTING.md for the layout."""
