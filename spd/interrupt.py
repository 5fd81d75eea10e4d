"""SIGINT and SIGTERM during a run: finish the current step, checkpoint, then stop.

`stop_requests()` installs handlers that only record the request; the training loop checks
`requested` after each step, writes a checkpoint and raises `Stopped`, which the CLI turns into
a one-line message and exit code 128 + signal number (130 for Ctrl-C, 143 for SIGTERM).
"""
import contextlib
import signal
import threading


class Stopped(Exception):
    """A run stopped on request after writing a checkpoint."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum


class StopRequests:
    signum: int | None = None

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""


@contextlib.contextmanager
def stop_requests():
    """Record SIGINT/SIGTERM instead of dying mid-step (main thread only; elsewhere the
    signals keep their usual effect)."""
    state = StopRequests()
    if threading.current_thread() is not threading.main_thread():
        yield state
        return

    def record(signum, frame):
        state.signum = signum

    old = {s: signal.signal(s, record) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield state
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
