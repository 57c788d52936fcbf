"""fingerprints stage."""
