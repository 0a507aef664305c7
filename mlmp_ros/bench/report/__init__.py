"""Reports from a results store: tables, Markdown, CSV, plots, and the paper's published numbers."""
