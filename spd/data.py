"""GLUE data: load and check rows, tokenise, batch with dynamic padding.

Rows come from a local folder `<dir>/<task>/<split>.jsonl[.gz]` (the layout of the offline copy
in `../shared/data/glue`) when one is given, else from the Hugging Face hub dataset
`nyu-mll/glue`. Either way every row is checked against the task's fields and label set, so a
bad row is reported with its file and line rather than failing later inside a batch.
"""
import gzip
import hashlib
import json
import math
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from spd.errors import SpdError
from spd.tasks import REGRESSION_RANGE, Task

HUB_REPO = "nyu-mll/glue"


def split_paths(data_dir: Path, task: Task, split: str) -> list[Path]:
    """The local files that may hold a split, in the order they are tried."""
    base = Path(data_dir) / task.name
    return [base / f"{split}.jsonl.gz", base / f"{split}.jsonl"]


def find_split_file(data_dir: Path, task: Task, split: str) -> Path:
    paths = split_paths(data_dir, task, split)
    for path in paths:
        if path.is_file():
            return path
    raise SpdError(f"no {task.name} {split} file: looked for {' and '.join(map(str, paths))}")


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def check_row(row, task: Task, where: str) -> dict:
    """Return the row's text fields and label, or raise an error naming `where` (file:line)."""
    if not isinstance(row, dict):
        raise SpdError(f"{where}: expected a JSON object, got {type(row).__name__}")
    for field in (*task.text_fields, "label"):
        if field not in row:
            raise SpdError(f"{where}: missing field {field!r}; {task.name} rows need "
                           f"{', '.join((*task.text_fields, 'label'))}")
    for field in task.text_fields:
        if not isinstance(row[field], str):
            raise SpdError(f"{where}: field {field!r} must be a string, got {row[field]!r}")
        try:
            row[field].encode("utf-8")
        except UnicodeEncodeError as e:  # a lone surrogate such as "\ud800" from a JSON escape
            raise SpdError(f"{where}: field {field!r} holds {row[field][e.start]!r}, which is not "
                           f"a Unicode character; allowed: valid UTF-8 text") from None
    label = row["label"]
    if task.is_regression:
        lo, hi = REGRESSION_RANGE
        ok = (isinstance(label, (int, float)) and not isinstance(label, bool)
              and math.isfinite(label) and lo <= label <= hi)
        allowed = f"a number from {lo} to {hi}"
    else:
        ok = isinstance(label, int) and not isinstance(label, bool) and 0 <= label < task.num_labels
        allowed = ", ".join(f"{i} ({n})" for i, n in enumerate(task.label_names))
    if not ok:
        raise SpdError(f"{where}: label {label!r} is outside {task.name}'s label set; allowed: {allowed}")
    return {**{f: row[f] for f in task.text_fields}, "label": label}


def read_jsonl(path: Path, task: Task) -> list[dict]:
    """The checked rows of a jsonl (or jsonl.gz) file; any read, decompression, decoding or
    parsing failure is one line naming the file and, where there is one, the line."""
    opener = gzip.open if path.suffix == ".gz" else open
    rows = []
    try:
        with opener(path, "rb") as f:
            for line_no, raw in enumerate(f, start=1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise SpdError(f"{path}:{line_no}: not UTF-8 (byte "
                                   f"{raw[e.start:e.start + 1]!r}); allowed: UTF-8 text") from None
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise SpdError(f"{path}:{line_no}: not valid JSON ({e.msg})") from None
                rows.append(check_row(row, task, f"{path}:{line_no}"))
    except (OSError, EOFError, zlib.error) as e:
        raise SpdError(f"{path}: cannot be read ({type(e).__name__}: {e}); allowed: a complete "
                       f"jsonl{' (gzip)' if path.suffix == '.gz' else ''} file") from None
    if not rows:
        raise SpdError(f"{path}: no rows; a {task.name} split needs at least one")
    return rows


def read_hub(repo: str, task: Task, split: str) -> list[dict]:
    """Load a split with `datasets.load_dataset(repo, task)`; needs the network for the hub."""
    import datasets

    try:
        ds = datasets.load_dataset(repo, task.name, split=split)
    except Exception as e:  # datasets raises many types; all mean "could not load".
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise SpdError(f"could not load {task.name} {split} from the hub dataset {repo!r} "
                       f"({type(e).__name__}: {first}); without a network, pass --data-dir "
                       f"or set SPD_DATA_DIR to a local GLUE folder") from None
    return [check_row(row, task, f"hub:{repo}/{task.name}/{split}:{i + 1}")
            for i, row in enumerate(ds)]


def load_split(task: Task, split: str, data_dir: Path | None, hub_repo: str = HUB_REPO) -> list[dict]:
    """Rows of one split: from `data_dir` when given, else from the hub."""
    if data_dir is not None:
        return read_jsonl(find_split_file(data_dir, task, split), task)
    return read_hub(hub_repo, task, split)


def data_provenance(task: Task, splits, data_dir: Path | None, hub_repo: str = HUB_REPO) -> dict:
    """What the rows came from: the sha256 of each local file, or the hub dataset's name."""
    if data_dir is None:
        return {"source": f"hub:{hub_repo}"}
    files = {split: find_split_file(data_dir, task, split) for split in splits}
    return {"source": "local", **{split: {"file": path.name, "sha256": file_sha256(path)}
                                  for split, path in files.items()}}


def encode(rows: list[dict], task: Task, tokenizer, max_length: int) -> list[dict]:
    """Tokenise rows once, unpadded; pairs get token type ids from the tokenizer."""
    texts = [[r[f] for r in rows] for f in task.text_fields]
    enc = tokenizer(*texts, truncation=True, max_length=max_length, padding=False,
                    return_token_type_ids=True, return_attention_mask=False)
    return [{"input_ids": ids, "token_type_ids": tt, "label": r["label"]}
            for ids, tt, r in zip(enc["input_ids"], enc["token_type_ids"], rows)]


def collate(examples: list[dict], pad_id: int) -> dict:
    """Pad a batch to its own longest example (dynamic padding), not to max_length."""
    width = max(len(e["input_ids"]) for e in examples)
    n = len(examples)
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)
    token_type_ids = torch.zeros((n, width), dtype=torch.long)
    attention_mask = torch.zeros((n, width), dtype=torch.long)
    for i, e in enumerate(examples):
        k = len(e["input_ids"])
        input_ids[i, :k] = torch.tensor(e["input_ids"])
        token_type_ids[i, :k] = torch.tensor(e["token_type_ids"])
        attention_mask[i, :k] = 1
    label_dtype = torch.float32 if isinstance(examples[0]["label"], float) else torch.long
    labels = torch.tensor([e["label"] for e in examples], dtype=label_dtype)
    return {"input_ids": input_ids, "token_type_ids": token_type_ids,
            "attention_mask": attention_mask, "labels": labels}


# Examples per length group, in batches: large enough that the sort within a group removes
# most padding, small enough that batches still mix examples from across the epoch.
GROUP_BATCHES = 50


class LengthGroupedBatches:
    """Batches of examples of similar length, seeded (a batch sampler for `DataLoader`).

    Each epoch: a random permutation (from `generator`), cut into groups of `GROUP_BATCHES`
    batches; each group sorted by length (longest first, ties in permuted order) and cut into
    batches; then the batches of all groups shuffled. The order depends only on the
    generator's seed, so a resumed run skips the same batches.
    """

    def __init__(self, lengths: list[int], batch_size: int, generator: torch.Generator):
        self.lengths, self.batch_size, self.generator = lengths, batch_size, generator

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def __iter__(self):
        n, b = len(self.lengths), self.batch_size
        order = torch.randperm(n, generator=self.generator).tolist()
        group = b * GROUP_BATCHES
        batches = []
        for start in range(0, n, group):
            chunk = sorted(order[start:start + group], key=lambda i: -self.lengths[i])
            batches += [chunk[i:i + b] for i in range(0, len(chunk), b)]
        for k in torch.randperm(len(batches), generator=self.generator).tolist():
            yield batches[k]


def padding_fraction(examples: list[dict], batches) -> float:
    """The fraction of token slots that are padding when `examples` are batched as `batches`
    (lists of indices) with dynamic padding."""
    slots = real = 0
    for batch in batches:
        lengths = [len(examples[i]["input_ids"]) for i in batch]
        slots += max(lengths) * len(lengths)
        real += sum(lengths)
    return 1 - real / slots


def make_loader(examples: list[dict], batch_size: int, pad_id: int, shuffle: bool,
                seed: int = 0, pin_memory: bool = False,
                group_by_length: bool = False) -> DataLoader:
    """A DataLoader whose shuffling depends only on `seed`; with `group_by_length` (and
    `shuffle`), batches of similar length (`LengthGroupedBatches`)."""
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    collate_fn = lambda b: collate(b, pad_id)  # noqa: E731
    if shuffle and group_by_length:
        sampler = LengthGroupedBatches([len(e["input_ids"]) for e in examples], batch_size,
                                       generator)
        return DataLoader(examples, batch_sampler=sampler, collate_fn=collate_fn,
                          pin_memory=pin_memory)
    return DataLoader(examples, batch_size=batch_size, shuffle=shuffle, generator=generator,
                      collate_fn=collate_fn, pin_memory=pin_memory)


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def epochs(loader: DataLoader):
    """The loader's batches, epoch after epoch without end; each pass reshuffles with the
    loader's seeded generator, so the order depends only on the seed."""
    while True:
        yield from loader


# The train subset evaluated beside dev is the same for every seed, so gaps are comparable.
TRAIN_SUBSET_SEED = 0


@dataclass
class TaskData:
    """A task's encoded splits, the fixed train subset and where the rows came from."""

    task: Task
    tokenizer: object
    train: list
    dev: dict  # dev split name -> encoded examples
    train_subset: list
    provenance: dict


def load_task_data(task: Task, tokenizer, data_dir: Path | None, max_length: int,
                   train_eval_size: int) -> TaskData:
    splits = ["train", *task.dev_splits]
    rows = {s: load_split(task, s, data_dir) for s in splits}
    enc = {s: encode(r, task, tokenizer, max_length) for s, r in rows.items()}
    g = torch.Generator().manual_seed(TRAIN_SUBSET_SEED)
    subset_idx = torch.randperm(len(enc["train"]), generator=g)[:train_eval_size].tolist()
    return TaskData(task, tokenizer, enc["train"], {s: enc[s] for s in task.dev_splits},
                    [enc["train"][i] for i in sorted(subset_idx)],
                    data_provenance(task, splits, data_dir))
