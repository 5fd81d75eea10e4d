"""spd's own error type: bad input that the CLI reports in one line with exit code 2."""


class SpdError(Exception):
    """A problem with the user's input (configuration, data, paths).

    The message must name what was wrong, the bad value and what is allowed; the CLI prints it
    as one line and exits with code 2, without a traceback.
    """


def output_folder(what: str, path) -> None:
    """Refuse, before any work, an output folder that is an existing regular file."""
    from pathlib import Path

    if path is not None and Path(path).exists() and not Path(path).is_dir():
        raise SpdError(f"{what}: {str(path)!r} is a file; allowed: a folder (absent or existing)")


def bad_value(what: str, value, allowed: str) -> SpdError:
    """Build an `SpdError` in the project's one format: what, the bad value, what is allowed."""
    return SpdError(f"{what}: got {value!r}; allowed: {allowed}")
