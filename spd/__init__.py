"""Sparse Progressive Distillation (Huang et al., ACL 2022): a test-first research suite."""
__version__ = "0.1.0"
