"""setup_env operators (being written)."""
