"""A model's GLUE metrics on encoded examples, and the constant-prediction floor beside them."""
import torch

from spd import data
from spd.data import TaskData
from spd.device import autocast
from spd.metrics import compute_metrics, majority_baseline
from spd.tasks import Task


@torch.no_grad()
def evaluate(model, examples: list, task: Task, device, batch_size: int, pad_id: int,
             suffix: str = "", precision: str = "auto") -> dict:
    """GLUE metrics and mean loss of `model` on encoded examples (eval mode, no dropout)."""
    was_training = model.training
    model.eval()
    preds, labels, loss_sum = [], [], 0.0
    for batch in data.make_loader(examples, batch_size, pad_id, shuffle=False,
                                  pin_memory=device.type == "cuda"):
        batch = data.to_device(batch, device)
        with autocast(device, precision):
            out = model(**batch)
        logits = out.logits.float()
        loss_sum += out.loss.float().item() * len(batch["labels"])
        preds.append(logits.squeeze(-1) if task.is_regression else logits.argmax(-1))
        labels.append(batch["labels"])
    model.train(was_training)
    result = compute_metrics(task, torch.cat(preds).cpu().numpy(), torch.cat(labels).cpu().numpy(),
                             suffix)
    result[f"loss{suffix}"] = loss_sum / len(examples)
    return result


def evaluate_dev(model, td: TaskData, device, batch_size: int, precision: str = "auto") -> dict:
    out = {}
    for split, suffix in td.task.dev_splits.items():
        out.update(evaluate(model, td.dev[split], td.task, device, batch_size,
                            td.tokenizer.pad_token_id, suffix, precision))
    return out


def majority_dev(td: TaskData) -> dict:
    """Dev metrics of a constant prediction (the most frequent train label, or the train mean
    for regression): the floor a collapsed model sits at, beside every result."""
    train = [e["label"] for e in td.train]
    out = {}
    for split, suffix in td.task.dev_splits.items():
        out.update(majority_baseline(td.task, train, [e["label"] for e in td.dev[split]], suffix))
    return {k: float(v) for k, v in out.items()}
