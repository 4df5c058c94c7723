"""evals: see CONTRIBUTING.md for the layout."""
