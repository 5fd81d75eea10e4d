"""GLUE loading: the real offline copy, the hub code path on local files, and bad rows."""
import gzip
import json
from collections import Counter

import pytest
import torch

from spd import data
from spd.errors import SpdError
from spd.tasks import TASKS

LOCAL_SPLITS = [(t, s) for t in ("cola", "sst2", "mrpc", "stsb", "rte", "wnli")
                for s in ("train", "validation")] + [("qnli", "validation")]


@pytest.mark.parametrize("task,split", LOCAL_SPLITS)
def test_real_glue_rows_and_labels(glue_dir, task, split):
    spec = TASKS[task]
    rows = data.load_split(spec, split, glue_dir)
    assert len(rows) == spec.sizes[split]
    labels = [r["label"] for r in rows]
    if spec.is_regression:
        assert min(labels) >= 0.0 and max(labels) <= 5.0
    else:
        assert set(labels) == set(range(spec.num_labels))
    assert all(isinstance(r[f], str) for r in rows[:50] for f in spec.text_fields)


def test_mrpc_label_counts_match_the_data_readme(glue_dir):
    rows = data.load_split(TASKS["mrpc"], "train", glue_dir)
    assert Counter(r["label"] for r in rows) == {0: 1194, 1: 2474}


def _write(path, lines, gz=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if gz else open
    with opener(path, "wt", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def _row(**kw):
    return json.dumps({"sentence1": "a b", "sentence2": "c d", "label": 1, "idx": 0} | kw)


def test_plain_jsonl_is_read_too(tmp_path):
    _write(tmp_path / "rte" / "validation.jsonl", [_row(), _row(label=0)])
    assert [r["label"] for r in data.load_split(TASKS["rte"], "validation", tmp_path)] == [1, 0]


def test_missing_file_names_every_path_tried(tmp_path):
    with pytest.raises(SpdError) as err:
        data.load_split(TASKS["rte"], "train", tmp_path)
    msg = str(err.value)
    assert "train.jsonl.gz" in msg and "train.jsonl" in msg and "\n" not in msg


@pytest.mark.parametrize("bad,expect", [
    ("{not json", "not valid JSON"),
    (_row(label=2), "label"),
    (_row(label="1"), "label"),
    (json.dumps({"sentence1": "a", "label": 1}), "sentence2"),
    (_row(sentence1=None), "sentence1"),
    ("[1, 2]", "JSON object"),
])
def test_bad_row_names_file_and_line(tmp_path, bad, expect):
    _write(tmp_path / "rte" / "train.jsonl.gz", [_row(), _row(), bad], gz=True)
    with pytest.raises(SpdError) as err:
        data.load_split(TASKS["rte"], "train", tmp_path)
    msg = str(err.value)
    assert "train.jsonl.gz:3" in msg and expect in msg and "\n" not in msg


def test_stsb_label_outside_range_is_refused(tmp_path):
    _write(tmp_path / "stsb" / "train.jsonl", [_row(label=3.5), _row(label=5.5)])
    with pytest.raises(SpdError, match=r"train.jsonl:2.*5.5"):
        data.load_split(TASKS["stsb"], "train", tmp_path)


def test_empty_file_is_refused(tmp_path):
    _write(tmp_path / "rte" / "train.jsonl", [""])
    with pytest.raises(SpdError, match="no rows"):
        data.load_split(TASKS["rte"], "train", tmp_path)


def test_hub_code_path_on_a_local_dataset_repo(tmp_path):
    """`load_dataset(repo, task)` is the call made for `nyu-mll/glue`; here the repo is local."""
    import datasets

    repo = tmp_path / "glue-repo"
    rows = [{"sentence1": f"s{i}", "sentence2": "t", "label": i % 2, "idx": i} for i in range(5)]
    (repo / "rte").mkdir(parents=True)
    datasets.Dataset.from_list(rows).to_parquet(str(repo / "rte" / "validation-00000-of-00001.parquet"))
    (repo / "README.md").write_text(
        "---\nconfigs:\n- config_name: rte\n  data_files:\n"
        "  - split: validation\n    path: rte/validation-*\n---\n")
    loaded = data.load_split(TASKS["rte"], "validation", None, hub_repo=str(repo))
    assert loaded == [{k: v for k, v in r.items() if k != "idx"} for r in rows]


def test_hub_failure_is_one_line(tmp_path):
    with pytest.raises(SpdError, match="could not load") as err:
        data.load_split(TASKS["rte"], "validation", None, hub_repo=str(tmp_path / "nothing"))
    assert "\n" not in str(err.value)


def test_pairs_get_token_type_ids_and_batches_pad_dynamically(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    rows = [{"sentence1": "a short one", "sentence2": "b", "label": 1},
            {"sentence1": "a much longer first sentence than the other", "sentence2": "x y z",
             "label": 0},
            {"sentence1": "tiny", "sentence2": "pair", "label": 0}]
    encoded = data.encode(rows, TASKS["rte"], tok, max_length=128)
    first = encoded[0]
    # [CLS] a short one [SEP] b [SEP]: segment 0 then segment 1.
    assert first["token_type_ids"] == [0] * 5 + [1] * 2
    batch = data.collate([encoded[0], encoded[2]], pad_id=tok.pad_token_id)
    assert batch["input_ids"].shape == (2, max(len(encoded[0]["input_ids"]), len(encoded[2]["input_ids"])))
    assert batch["attention_mask"].sum(1).tolist() == [len(encoded[0]["input_ids"]), len(encoded[2]["input_ids"])]
    assert batch["labels"].dtype == torch.long
    truncated = data.encode(rows, TASKS["rte"], tok, max_length=8)
    assert max(len(e["input_ids"]) for e in truncated) == 8


def test_regression_labels_are_float(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    enc = data.encode([{"sentence1": "a", "sentence2": "b", "label": 2.5}], TASKS["stsb"], tok, 16)
    assert data.collate(enc, pad_id=0)["labels"].dtype == torch.float32


def test_loader_shuffles_reproducibly(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    rows = [{"sentence": f"word {i}", "label": i % 2} for i in range(40)]
    enc = data.encode(rows, TASKS["sst2"], tok, 16)
    order = lambda seed: [b["labels"].tolist() + b["input_ids"][:, 2].tolist()
                          for b in data.make_loader(enc, 8, tok.pad_token_id, shuffle=True, seed=seed)]
    assert order(1) == order(1) and order(1) != order(2)
