"""Core: the strict configuration tree, registries, user-facing errors, atomic writes (no torch, no Ray)."""
