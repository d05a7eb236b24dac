"""Operating postroom: the admin API and dashboard, the CLI."""
