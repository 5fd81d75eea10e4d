"""One spd process per --output: a second one is refused naming the holder, the first's
results stay intact, and a lock left by a killed process never blocks."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from spd import rundir
from spd.errors import SpdError
from spd.lock import OutputLock
from tests.conftest import REPO
from tests.test_distill import tiny_teacher  # noqa: F401 (fixture)


def _prune_argv(teacher, glue, out, steps: int) -> list[str]:
    return [sys.executable, "-m", "spd", "prune", "--task", "rte", "--teacher", str(teacher),
            "--sparsity", "0.5", "--data-dir", str(glue), "--output", str(out), "--preset",
            "smoke", "--set", "data.batch_size=8", "--set", f"stages.finetune={steps}"]


def test_a_second_process_on_one_output_is_refused_and_the_first_finishes(tiny_teacher,
                                                                         small_glue, tmp_path):
    teacher = tiny_teacher
    out = tmp_path / "run"
    first = subprocess.Popen(_prune_argv(teacher, small_glue, out, 600), cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not ((out / rundir.LOCK).is_file() and (out / rundir.LOCK).read_text()):
            assert first.poll() is None and time.time() < deadline, first.communicate()
            time.sleep(0.2)
        second = subprocess.run(_prune_argv(teacher, small_glue, out, 600), cwd=REPO,
                                capture_output=True, text=True, timeout=300)
        assert second.returncode == 2, second.stderr[-2000:]
        lines = [x for x in second.stderr.splitlines() if x.strip()]
        assert len(lines) == 1 and "in use by another spd process" in lines[0], lines
        assert f"pid {first.pid}" in lines[0] and "started" in lines[0]
        assert first.wait(timeout=600) == 0, first.communicate()
    finally:
        if first.poll() is None:
            first.kill()
    final = json.loads((out / "final.json").read_text())
    assert final["steps"] == 12 + 8 + 600 and (out / "model").is_dir()


def test_a_lock_left_by_a_killed_process_is_recovered(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(tmp_path / rundir.LOCK)!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "os.write(fd, b'host h, pid p, started then'); print('held', flush=True)\n"
        "time.sleep(600)\n")], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    lock = OutputLock(tmp_path)
    with pytest.raises(SpdError, match="in use by another spd process .host h, pid p"):
        lock.acquire(rundir.state(tmp_path))
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    lock.acquire(rundir.state(tmp_path))  # the kernel freed the dead process's lock
    assert f"pid {os.getpid()}" in (tmp_path / rundir.LOCK).read_text()
    lock.release()


def test_a_folder_that_changed_since_it_was_checked_is_refused(tmp_path):
    seen = rundir.state(tmp_path)
    (tmp_path / rundir.FINAL).write_text("{}")  # another process finished a run meanwhile
    with pytest.raises(SpdError, match="changed while this run started"):
        OutputLock(tmp_path).acquire(seen)
