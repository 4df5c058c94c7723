"""integrations/cron: see CONTRIBUTING.md for the layout."""
