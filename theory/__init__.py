"""The error bounds of progressive distillation and their numerical checks (coming next)."""
