"""Run directories that describe themselves, written atomically (temporary file, then rename)."""
import hashlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

from spd.errors import SpdError

CONFIG, METRICS, FINAL, MODEL = "config.json", "metrics.jsonl", "final.json", "model"
CHECKPOINT = "checkpoint.pt"
LOCK = ".spd.lock"  # OutputLock's file


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # as open() would create it, not mkstemp's 0600
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:  # disk full, permission lost mid-run: no temp file, one line
        Path(tmp).unlink(missing_ok=True)
        raise _write_failed(path, e) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_failed(path: Path, e: OSError) -> SpdError:
    return SpdError(f"writing {str(path)!r} failed ({e.strerror or e}); the files written before "
                    f"are kept, the last checkpoint too; allowed: free space or restore the "
                    f"permission, then run the same command with --resume")


def write_text(path: Path, text: str) -> None:
    _atomic_write_text(path, text)


def copy_file(source: Path, path: Path) -> None:
    """Copy `source` to `path` atomically (a temporary file beside it, then renamed)."""
    fd, tmp = tempfile.mkstemp(dir=Path(path).parent, prefix=f".{Path(path).name}.", suffix=".tmp")
    os.close(fd)
    try:
        shutil.copyfile(source, tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise _write_failed(Path(path), e) from None


def write_json(path: Path, obj) -> None:
    _atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_jsonl(path: Path, rows: list[dict]) -> None:
    _atomic_write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def _damaged(path: Path, e: Exception) -> SpdError:
    return SpdError(f"{str(path)!r} is not valid JSON ({type(e).__name__}: {e}); allowed: a "
                    f"whole result file as spd writes it (rerun that run; a damaged result is "
                    f"never used)")


def read_json(path: Path):
    """A result file; a damaged one (truncated, edited, not UTF-8) is refused, never used."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
        raise _damaged(path, e) from None


def read_jsonl(path: Path) -> list[dict]:
    """The rows of a JSON-lines file such as `metrics.jsonl`; a damaged one is refused."""
    try:
        return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]
    except (ValueError, UnicodeDecodeError) as e:
        raise _damaged(path, e) from None


def model_source(name: str) -> str:
    """A run folder's `model/`, else the name itself (a model folder or a hub id)."""
    path = Path(name)
    return str(path / MODEL) if (path / MODEL).is_dir() else name


def save_model(model, tokenizer, run_dir: Path) -> Path:
    """save_pretrained into a temporary folder, then swap it in as `model/`."""
    final = Path(run_dir) / MODEL
    tmp = Path(tempfile.mkdtemp(dir=run_dir, prefix=f"{MODEL}.tmp"))
    os.chmod(tmp, 0o777 & ~_umask())  # as mkdir would create it, not mkdtemp's 0700
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final


def save_checkpoint(run_dir: Path, state: dict) -> None:
    """torch.save `state` as the run's checkpoint, atomically (a kill leaves the old one),
    prefixed by the SHA-256 of the payload so that a damaged file is refused, not loaded."""
    import io

    import torch

    buf = io.BytesIO()
    torch.save(state, buf)
    payload = buf.getvalue()
    path = Path(run_dir) / CHECKPOINT
    tmp = path.with_name(f".{CHECKPOINT}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(hashlib.sha256(payload).hexdigest().encode() + b"\n")
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:  # the previous checkpoint stays whole: the new one never replaced it
        tmp.unlink(missing_ok=True)
        raise _write_failed(path, e) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_checkpoint(run_dir: Path) -> dict | None:
    """The run's checkpoint, or None when there is none; a damaged one is refused."""
    import io

    import torch

    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        return None
    data = path.read_bytes()
    damaged = SpdError(f"checkpoint {str(path)!r} is damaged (truncated or corrupted: its "
                       f"SHA-256 does not match); allowed: an intact checkpoint, or --overwrite "
                       f"to start the run again")
    if data[:2] == b"PK":  # written before checksums (a bare torch.save zip): load if it can be
        try:
            return torch.load(io.BytesIO(data), weights_only=True)
        except Exception:
            raise damaged from None
    digest, payload = data[:64], data[65:]
    if data[64:65] != b"\n" or hashlib.sha256(payload).hexdigest().encode() != digest:
        raise damaged
    return torch.load(io.BytesIO(payload), weights_only=True)


def holds_config(run_dir: Path, cfg) -> bool:
    """Whether `run_dir` holds a run (finished or not) of the configuration `cfg` (a config
    dataclass). Its `config.json` is read back through the current dataclasses, so a run saved
    before a field was added (it lacks the key) matches when `cfg` has that field's default."""
    from spd.overrides import from_dict, to_dict

    try:
        saved = from_dict(read_json(Path(run_dir) / CONFIG), type(cfg))
    except (OSError, ValueError, TypeError, SpdError):
        return False
    return to_dict(saved) == to_dict(cfg)


# What spd's own tools write into a run folder before its config.json: spd's lock, and the
# ablation runner's lock and log of each cell.
BOOKKEEPING = frozenset({LOCK, ".lock", "runner.jsonl"})


def foreign_entries(run_dir: Path) -> list[str]:
    """The entries of a folder that holds no spd run (no config.json) which spd did not write:
    none for an absent or empty folder, a spd run folder, or one holding only bookkeeping and
    the finished teacher of an interrupted `spd run`."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir() or (run_dir / CONFIG).is_file():
        return []
    return [entry for entry in sorted(os.listdir(run_dir)) if entry not in BOOKKEEPING
            and not (entry == "teacher" and (run_dir / entry / CONFIG).is_file())]


def check_existing(run_dir: Path, cfg, overwrite: bool) -> bool:
    """Check `run_dir` before a run of `config`, changing nothing.

    Returns True when it already holds a finished run of exactly this configuration (nothing to
    do). A folder holding a run of another configuration is refused unless `overwrite`; a
    folder holding anything spd did not write is refused, `overwrite` or not.
    """
    run_dir = Path(run_dir)  # check_writable, called first, refuses a file
    foreign = foreign_entries(run_dir)
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise SpdError(f"--output {str(run_dir)!r} holds files spd did not write ({shown}); "
                       f"allowed: an absent or empty folder, or a spd run folder (--overwrite "
                       f"replaces only spd's own runs)")
    if overwrite or not (run_dir / CONFIG).is_file():
        return False
    if not holds_config(run_dir, cfg):
        raise SpdError(f"--output {str(run_dir)!r} holds a run with a different configuration; "
                       f"allowed: a new folder, or --overwrite to replace it")
    return (run_dir / FINAL).is_file()


def start(run_dir: Path, config: dict) -> None:
    """Create `run_dir` (clearing an earlier run's result files) and write `config.json`."""
    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        for name in (METRICS, FINAL, CHECKPOINT):
            (run_dir / name).unlink(missing_ok=True)
        write_json(run_dir / CONFIG, config)
    except OSError as e:
        raise SpdError(f"--output {str(run_dir)!r} is not writable ({e.strerror}); "
                       f"allowed: a folder you can write to") from None


def check_writable(run_dir: Path) -> None:
    """Fail early, before any work, if `run_dir` cannot be created or written."""
    probe = Path(run_dir)
    if probe.exists() and not probe.is_dir():
        raise SpdError(f"--output {str(run_dir)!r} is a file; allowed: a new or a run folder")
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise SpdError(f"--output {str(run_dir)!r} is not writable ({probe} does not accept "
                       f"new files); allowed: a folder you can write to")


def state(run_dir: Path) -> tuple[bool, bool, bool]:
    """Which of config.json, final.json and checkpoint.pt `run_dir` holds."""
    return tuple((Path(run_dir) / name).is_file() for name in (CONFIG, FINAL, CHECKPOINT))


def git_commit() -> dict:
    """The commit of the checkout spd runs from, and whether it had uncommitted changes."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], check=True,
                                capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               check=True, capture_output=True, text=True).stdout.strip() != ""
        return {"git_commit": commit, "git_dirty": dirty}
    except (OSError, subprocess.CalledProcessError):
        # A copy of the tree without .git (as sent to a lent GPU machine): the commit it was
        # copied from, where the copier names it; whether it was clean is not known here.
        return {"git_commit": os.environ.get("SPD_GIT_COMMIT") or None, "git_dirty": None}


def environment(device_text: str) -> dict:
    import torch
    import transformers

    from spd import __version__

    return {"spd": __version__, "torch": str(torch.__version__),
            "transformers": transformers.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "device": device_text, **git_commit()}
