"""logs operators (being written)."""
