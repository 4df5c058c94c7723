"""integrations: see CONTRIBUTING.md for the layout."""
