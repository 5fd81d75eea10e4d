"""`spd export RUN_DIR --format F`: the student saved compressed with the `compressed-tensors`
library (the format vLLM and llmcompressor read), loaded back and checked.

Formats: `sparse-bitmask` (any unstructured sparsity: a bitmask and the kept values per
matrix) and `sparse-24-bitmask` (a 2:4 student). Only the six prunable matrices of every
encoder layer are compressed; the rest is stored as it is. The round trip is checked in the
same command: every tensor of the model loaded back from the compressed folder must equal the
run's own model bit for bit. compressed-tensors is the optional extra `compress`.
"""
import os
from pathlib import Path

from spd import rundir
from spd.errors import SpdError, bad_value
from spd.masks import parse_pattern
from spd.models import compressed_tensors_api, load_compressed, recorded_config
from spd.pruning import PRUNABLE

FORMATS = ("sparse-bitmask", "sparse-24-bitmask")
FOLDER = "model-compressed"
# The prunable matrices, as compressed-tensors' regular-expression targets.
TARGETS = [rf"re:.*encoder\.layer\.\d+\.{path.replace('.', chr(92) + '.')}$" for path in PRUNABLE]


def check_format(fmt: str, pattern: str, flag: str = "--format") -> None:
    """Refuse a format spd cannot write, or the 2:4 format for a student of another pattern."""
    if fmt not in FORMATS:
        raise bad_value(flag, fmt, ", ".join(FORMATS))
    if fmt == "sparse-24-bitmask" and parse_pattern(pattern) != (2, 4):
        raise bad_value(flag, fmt, f"sparse-bitmask for a {pattern} student "
                        f"(sparse-24-bitmask needs prune.pattern=2:4)")


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def export(run_dir: Path, fmt: str, output: Path | None = None,
           data_dir: Path | None = None) -> dict:
    """Write the compressed model of a finished SPD run, load it back, check it bit for bit
    and, with `data_dir`, that its dev metrics are the run's final ones; a summary."""
    from safetensors.torch import save_file
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    ModelCompressor, SparsityCompressionConfig = compressed_tensors_api()
    run_dir = Path(run_dir)
    config = recorded_config(str(run_dir))
    if config is None or "prune" not in config or not (run_dir / rundir.FINAL).is_file():
        raise SpdError(f"RUN_DIR: {str(run_dir)!r} holds no finished SPD run; allowed: a run "
                       f"folder written by spd prune or spd run")
    check_format(fmt, config["prune"]["pattern"])
    out = Path(output) if output else run_dir / FOLDER
    if out.exists() and not out.is_dir():
        raise SpdError(f"--output: {str(out)!r} is a file; allowed: a folder")
    dense_dir = run_dir / rundir.MODEL
    model = AutoModelForSequenceClassification.from_pretrained(dense_dir)
    tokenizer = AutoTokenizer.from_pretrained(dense_dir)
    final = rundir.read_json(run_dir / rundir.FINAL)
    sparsity = SparsityCompressionConfig.load_from_registry(
        fmt, targets=TARGETS, global_sparsity=final["sparsity"],
        sparsity_structure="2:4" if fmt == "sparse-24-bitmask" else "unstructured")
    compressor = ModelCompressor(sparsity_config=sparsity)
    compressed = compressor.compress(model)
    out.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(out)
    tokenizer.save_pretrained(out)
    save_file({k: v.contiguous() for k, v in compressed.items()},
              os.fspath(out / "model.safetensors"), metadata={"format": "pt"})
    compressor.update_config(os.fspath(out))
    if (dense_dir / "README.md").is_file():
        (out / "README.md").write_text((dense_dir / "README.md").read_text())
    loaded = load_compressed(out)
    mine, back = model.state_dict(), loaded.state_dict()
    same = mine.keys() == back.keys() and all(
        mine[k].dtype == back[k].dtype and mine[k].equal(back[k]) for k in mine)
    if not same:
        raise SpdError(f"the compressed model in {str(out)!r} does not load back bit for bit; "
                       f"allowed: report this as a bug")
    dense, small = folder_bytes(dense_dir), folder_bytes(out)
    summary = {"format": fmt, "output": str(out), "dense_bytes": dense,
               "compressed_bytes": small, "ratio": small / dense, "bitwise_round_trip": same}
    if data_dir is not None:
        summary["dev"] = _dev_metrics(loaded, tokenizer, config, data_dir)
        summary["dev_identical"] = summary["dev"] == final["dev"]
    return summary


def _dev_metrics(model, tokenizer, config: dict, data_dir: Path) -> dict:
    """The loaded-back model's dev metrics with the run's own length, batch and precision."""
    import torch

    from spd.tasks import get_task
    from spd.data import load_task_data
    from spd.evaluation import evaluate_dev

    task = get_task(config["task"])
    td = load_task_data(task, tokenizer, data_dir, config["data"]["max_length"], 0)
    return evaluate_dev(model, td, torch.device("cpu"), config["data"]["eval_batch_size"],
                        config.get("precision", "auto"))
