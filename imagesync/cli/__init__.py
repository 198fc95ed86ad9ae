"""Command line and reports: the only place that prints and chooses exit codes."""
