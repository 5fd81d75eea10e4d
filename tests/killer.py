"""`python -m tests.killer TARGET N PROGRAM ARGS...`: run PROGRAM (`spd` or `ablations`) with
ARGS, and SIGKILL the process as it makes the N-th call (1-based) of TARGET, a dotted name such
as `torch.optim.AdamW.step` (the N-th optimizer step, counted over the whole process) or
`ablations.run.run_claimed`. SIGKILL cannot be caught: nothing is cleaned up, as when a
machine dies."""
import importlib
import os
import signal
import sys


def resolve(dotted: str):
    """The object owning the last attribute of `dotted`, and that attribute's name."""
    parts = dotted.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            owner = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for name in parts[i:-1]:
            owner = getattr(owner, name)
        return owner, parts[-1]
    raise ImportError(dotted)


def main() -> int:
    target, n, program, args = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
    owner, name = resolve(target)
    real, calls = getattr(owner, name), [0]

    def counted(*a, **k):
        calls[0] += 1
        if calls[0] == n:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*a, **k)

    setattr(owner, name, counted)
    if program == "spd":
        from spd.cli import main as entry
    else:
        from ablations.run import main as entry
    return entry(args)


if __name__ == "__main__":
    sys.exit(main())
