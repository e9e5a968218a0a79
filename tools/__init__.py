"""Developer tools that are not part of the web UI itself (run with `python -m tools.<name>`)."""
