"""One spd process per run folder: the `flock` held from a run's first write to its end."""
import os
from pathlib import Path

from spd.errors import SpdError
from spd.rundir import LOCK, state


class OutputLock:
    """One spd process per --output: an exclusive `flock` on `<run_dir>/.spd.lock`, taken just
    before a run first writes and held until it ends. A second process is refused in one line
    naming the holder (host, pid, start time); the kernel frees the lock of a process that dies,
    so a lock left by a killed run never blocks (on network filesystems this needs working
    `flock`, as on NFSv4). Taking it also checks that the folder is as it was when the run
    checked it, so a run finished meanwhile by another process is never cleared."""

    def __init__(self, run_dir: Path):
        self.run_dir, self.fd = Path(run_dir), None

    def _refuse_if_held(self, fd: int) -> None:
        import fcntl

        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise SpdError(f"--output {str(self.run_dir)!r} is in use by another spd process "
                           f"({holder}); allowed: wait for it to end, or another "
                           f"--output") from None

    def check_free(self) -> None:
        """Refuse at once, before any work and touching nothing, when another process holds
        the lock (a run that is only starting is caught again by `acquire`)."""
        import fcntl

        try:
            fd = os.open(self.run_dir / LOCK, os.O_RDWR)
        except OSError:
            return  # no lock file (or unreadable): nobody has run here with locks
        self._refuse_if_held(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def acquire(self, seen: tuple[bool, bool, bool]) -> None:
        import socket
        import time

        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.fd = os.open(self.run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise SpdError(f"--output {str(self.run_dir)!r} is not writable ({e.strerror}); "
                           f"allowed: a folder you can write to") from None
        fd, self.fd = self.fd, None
        self._refuse_if_held(fd)  # closes it when held
        self.fd = fd
        if state(self.run_dir) != seen:
            self.release()
            raise SpdError(f"--output {str(self.run_dir)!r} changed while this run started "
                           f"(another spd process wrote to it); allowed: run the command again")
        started = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime())
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"host {socket.gethostname()}, pid {os.getpid()}, started "
                  f"{started}".encode(), 0)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor releases the lock
            self.fd = None
