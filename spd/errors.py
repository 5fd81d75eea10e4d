"""spd's own error type: bad input that the CLI reports in one line with exit code 2."""


class SpdError(Exception):
    """A problem with the user's input (configuration, data, paths).

    The message must name what was wrong, the bad value and what is allowed; the CLI prints it
    as one line and exits with code 2, without a traceback.
    """


def bad_value(what: str, value, allowed: str) -> SpdError:
    """Build an `SpdError` in the project's one format: what, the bad value, what is allowed."""
    return SpdError(f"{what}: got {value!r}; allowed: {allowed}")
