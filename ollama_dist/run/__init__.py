"""run: see CONTRIBUTING.md for the layout."""
