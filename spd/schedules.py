"""Schedules as pure functions of the step: no counters, no side effects."""


def warmup_linear_decay(step: int, total_steps: int, warmup_steps: int) -> float:
    """Learning-rate multiplier: 0 -> 1 linearly over `warmup_steps`, then 1 -> 0 at `total_steps`.

    Args:
        step: optimizer steps taken so far (0 before the first).
        total_steps: steps in the whole run.
        warmup_steps: steps of linear warm-up (0: start at the full rate).
    """
    if step < warmup_steps:
        return step / warmup_steps
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))
