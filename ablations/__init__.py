"""Ablation grids, runner and tables. `results/teachers/` holds the teacher runs."""
