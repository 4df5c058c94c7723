"""checks: see CONTRIBUTING.md for the layout."""
