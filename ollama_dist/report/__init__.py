"""report: see CONTRIBUTING.md for the layout."""
