"""clusters stage."""
