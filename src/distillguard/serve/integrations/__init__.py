"""Files to drop into other systems (they must not import distillguard)."""
