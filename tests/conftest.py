"""Shared fixtures: the offline GLUE copy, a tiny random BERT saved as a local model folder."""
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_GLUE = REPO.parent / "shared" / "data" / "glue"


def table_csv_rows(path: Path) -> list[dict]:
    """The rows of a table CSV written by `ablations.tables` (header and rows, nothing else)."""
    import csv

    return list(csv.DictReader(path.read_text().splitlines()))


# Tests never reach the network, whatever the caller's environment says.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="session")
def glue_dir() -> Path:
    """The real GLUE data: SPD_DATA_DIR, else ../shared/data/glue beside the checkout."""
    path = Path(os.environ.get("SPD_DATA_DIR") or SHARED_GLUE)
    if not (path / "mrpc").is_dir():
        pytest.skip(f"no offline GLUE copy at {path}")
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer, hidden-128 random BERT saved with the MiniLM tokenizer (no downloads)."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from spd.models import resolve_model_path

    out = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("minilm"))
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=128, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=256,
                        max_position_embeddings=128)
    BertModel(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def small_glue(glue_dir, tmp_path_factory):
    """RTE cut to 40 train and 20 dev rows, so a tiny run evaluates in well under a second."""
    import gzip

    out = tmp_path_factory.mktemp("glue")
    (out / "rte").mkdir()
    for split, n in (("train", 40), ("validation", 20)):
        with gzip.open(glue_dir / "rte" / f"{split}.jsonl.gz", "rt") as f:
            lines = [next(f) for _ in range(n)]
        (out / "rte" / f"{split}.jsonl").write_text("".join(lines))
    return out


def _hypothesis_profiles():
    """`HYPOTHESIS_PROFILE=ci`: 200 examples per property, derandomized; `dev` (default): fast."""
    from hypothesis import HealthCheck, settings

    settings.register_profile("dev", max_examples=30, deadline=None)
    settings.register_profile("ci", max_examples=200, deadline=None, derandomize=True,
                              print_blob=True, suppress_health_check=[HealthCheck.too_slow])
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


_hypothesis_profiles()


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` run only where CUDA is present (`pytest -m gpu` on a GPU machine)."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (no GPU here)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
