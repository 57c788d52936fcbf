"""countermeasures stage."""
