"""signals stage."""
