"""Page state, one module per feature."""
