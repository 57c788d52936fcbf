"""scoring stage: account risk from its own behaviour and its cluster's evidence."""

DEFAULT_THRESHOLD = 0.5  # flag accounts at or above this risk
