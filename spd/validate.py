"""The checks every config section runs on construction: each failure is spd's one-line
error naming the key, the bad value and what is allowed."""
import math

from spd.errors import bad_value


def check(name: str, value, ok: bool, allowed: str) -> None:
    if not ok:
        raise bad_value(name, value, allowed)


def positive(name, value):
    check(name, value, math.isfinite(value) and value > 0, "a finite number > 0")


def nonneg(name, value):
    check(name, value, math.isfinite(value) and value >= 0, "a finite number >= 0")


def choice(name, value, choices):
    check(name, value, value in choices, ", ".join(choices))
