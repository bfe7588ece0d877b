"""Drop-in names of the official SAM 2 / SAMURAI code (builders, config names, overrides)."""
