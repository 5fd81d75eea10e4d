"""Score an exported SPD model with plain transformers, without importing spd.

    python ablations/plain_eval.py MODEL_DIR GLUE_DIR/mrpc/validation.jsonl.gz

Prints the dev accuracy and F1 (MRPC-style pair task, labels 0/1) and the sparsity of every
encoder linear weight, read from the saved weights: the check that the exported `model/` is a
plain Hugging Face model that scores what `final.json` says.
"""
import gzip
import json
import sys

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer


def main(model_dir: str, dev_file: str) -> None:
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    with gzip.open(dev_file, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    preds = []
    with torch.no_grad():
        for i in range(0, len(rows), 64):
            chunk = rows[i:i + 64]
            enc = tok([r["sentence1"] for r in chunk], [r["sentence2"] for r in chunk],
                      truncation=True, max_length=128, padding=True, return_tensors="pt")
            preds += model(**enc).logits.argmax(-1).tolist()
    labels = [r["label"] for r in rows]
    tp = sum(p == 1 and y == 1 for p, y in zip(preds, labels))
    fp = sum(p == 1 and y == 0 for p, y in zip(preds, labels))
    fn = sum(p == 0 and y == 1 for p, y in zip(preds, labels))
    acc = sum(p == y for p, y in zip(preds, labels)) / len(labels)
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    zeros = total = 0
    worst = 0.0
    for name, w in model.named_parameters():
        if ".encoder." in name and name.endswith(".weight") and w.dim() == 2:
            zeros += int((w == 0).sum())
            total += w.numel()
            worst = max(worst, float((w == 0).float().mean()))
    print(json.dumps({"accuracy": acc, "f1": f1, "prunable_sparsity": zeros / total,
                      "max_matrix_sparsity": worst, "matrices_weights": total}))


if __name__ == "__main__":
    main(*sys.argv[1:])
