"""One module per CLI command; each only wires options to library code."""
