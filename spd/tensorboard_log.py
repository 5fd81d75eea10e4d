"""Optional TensorBoard mirror of a run's metrics records (`--tensorboard`): every loss term,
the sparsity (target and realised), the replacing probability, the learning rate, and the dev
and train-subset metrics, as scalars under `RUN/tensorboard/`. metrics.jsonl stays the record
tables are made from; this is for watching a run."""
from pathlib import Path

from spd.errors import SpdError

FOLDER = "tensorboard"
SECTIONS = ("loss", "dev", "train_subset")  # nested records: one scalar per entry
SCALARS = ("sparsity", "realised_sparsity", "replace_p", "lr", "train_loss")


def scalars(record: dict) -> dict[str, float]:
    """The TensorBoard tags and values of one metrics record."""
    out = {key: float(record[key]) for key in SCALARS if record.get(key) is not None}
    for section in SECTIONS:
        for name, value in (record.get(section) or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out[f"{section}/{name}"] = float(value)
    return out


class Scalars:
    """Writes each record's scalars at its step when enabled; does nothing otherwise. The
    event folder is made at the first record, so a refused run leaves nothing behind."""

    def __init__(self, run_dir: Path, enabled: bool):
        self.run_dir, self.enabled, self.writer = Path(run_dir), enabled, None
        if enabled:
            try:
                import torch.utils.tensorboard  # noqa: F401 (fails without the package)
            except ImportError:
                raise SpdError("--tensorboard: the tensorboard package is not installed; "
                               "allowed: pip install 'spd[tensorboard]', or drop the flag") from None

    def log(self, record: dict) -> None:
        if not self.enabled:
            return
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(self.run_dir / FOLDER))
        for tag, value in scalars(record).items():
            self.writer.add_scalar(tag, value, record["step"])
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
