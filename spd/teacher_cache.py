"""The pure teacher's outputs (logits, hidden states, attention probabilities) on the training
examples, computed once and reused every epoch (`teacher_cache` GiB; SPD_METHOD.md: the pure
teacher is frozen, so its outputs on an example never change).

Entries are kept at each example's real length, in the run's compute precision (bf16 runs keep
bf16, half the memory), and found by content (the real token and segment ids): a perturbed
copy (`spd.augment`) is simply not found and runs through the teacher with the other misses.
The cache is built in one fixed order (by length, then by index), so its contents are a
function of the training set and a resumed run rebuilds the same. Padded positions are not
kept, so the loss must leave them out (`loss.padding=exclude`).
"""
import time
from dataclasses import dataclass

import torch

from spd.data import collate, to_device
from spd.device import autocast


@dataclass
class TeacherOutputs:
    """What the SPD loss reads of the teacher: [B, C] logits, L+1 [B, T, H] hidden states and
    L [B, heads, T, T] attention probabilities."""

    logits: torch.Tensor
    hidden_states: tuple[torch.Tensor, ...]
    attentions: tuple[torch.Tensor, ...]


def teacher_outputs(forward, inputs: dict, device, precision: str) -> TeacherOutputs:
    """The teacher on a batch (no gradients, the run's autocast)."""
    with torch.no_grad(), autocast(device, precision):
        out = forward(**inputs, output_hidden_states=True, output_attentions=True)
    return TeacherOutputs(out.logits, tuple(out.hidden_states), tuple(out.attentions))


def _key(ids: torch.Tensor, types: torch.Tensor) -> bytes:
    return ids.cpu().numpy().tobytes() + b"|" + types.cpu().numpy().tobytes()


class TeacherCache:
    """`cache(inputs)`: the teacher's outputs on a batch, from the cache where it holds the row.

    Attributes: cached (examples held), bytes (their size), build_s (seconds to fill it), hits
    and misses (rows served so far from the cache and from the teacher)."""

    def __init__(self, forward, examples: list[dict], pad_id: int, device, precision: str,
                 batch_size: int, budget_bytes: float):
        self.forward, self.device, self.precision = forward, device, precision
        self.dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        self.store: dict[bytes, tuple] = {}
        self.bytes = self.hits = self.misses = 0
        start_time = time.perf_counter()
        self._fill(examples, pad_id, batch_size, budget_bytes)
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize(device)
        self.build_s = time.perf_counter() - start_time

    def _fill(self, examples: list[dict], pad_id: int, batch_size: int, budget_bytes: float):
        device, precision, forward = self.device, self.precision, self.forward
        order = sorted(range(len(examples)), key=lambda i: len(examples[i]["input_ids"]))
        for start in range(0, len(order), batch_size):
            chunk = [examples[i] for i in order[start:start + batch_size]]
            batch = to_device(collate(chunk, pad_id), device)
            out = teacher_outputs(forward, {k: v for k, v in batch.items() if k != "labels"},
                                  device, precision)
            for r, e in enumerate(chunk):
                n = len(e["input_ids"])
                key = _key(batch["input_ids"][r, :n], batch["token_type_ids"][r, :n])
                if key in self.store:  # a duplicate example
                    continue
                entry = (out.logits[r].to(self.dtype),
                         torch.stack([h[r, :n] for h in out.hidden_states]).to(self.dtype),
                         torch.stack([a[r, :, :n, :n] for a in out.attentions]).to(self.dtype))
                size = sum(t.numel() * t.element_size() for t in entry)
                if self.bytes + size > budget_bytes:
                    return  # by length: what is left is longer and fits no better
                self.store[key] = entry
                self.bytes += size

    @property
    def cached(self) -> int:
        return len(self.store)

    def __call__(self, inputs: dict) -> TeacherOutputs:
        ids, types, mask = inputs["input_ids"], inputs["token_type_ids"], inputs["attention_mask"]
        lengths = mask.sum(1).tolist()
        found = [self.store.get(_key(ids[r, :n], types[r, :n])) for r, n in enumerate(lengths)]
        miss = [r for r, entry in enumerate(found) if entry is None]
        self.hits += len(found) - len(miss)
        self.misses += len(miss)
        computed = (teacher_outputs(self.forward, {k: v[miss] for k, v in inputs.items()},
                                    self.device, self.precision) if miss else None)
        if len(miss) == len(found):
            return TeacherOutputs(computed.logits.to(self.dtype),
                                  *(tuple(t.to(self.dtype) for t in part) for part in
                                    (computed.hidden_states, computed.attentions)))
        logits, hidden, attn = next(e for e in found if e is not None)  # for the shapes
        rows, width = ids.shape
        new = dict(dtype=self.dtype, device=ids.device)
        # Real positions are filled below; padded ones stay 0 (the loss leaves them out).
        logits = torch.zeros(rows, *logits.shape, **new)
        hidden = torch.zeros(hidden.shape[0], rows, width, hidden.shape[2], **new)
        attn = torch.zeros(attn.shape[0], rows, attn.shape[1], width, width, **new)
        for r, entry in enumerate(found):
            if entry is not None:
                n = lengths[r]
                logits[r], hidden[:, r, :n], attn[:, r, :, :n, :n] = entry
        if miss:
            logits[miss] = computed.logits.to(self.dtype)
            hidden[:, miss] = torch.stack(computed.hidden_states).to(self.dtype)
            attn[:, miss] = torch.stack(computed.attentions).to(self.dtype)
        return TeacherOutputs(logits, tuple(hidden), tuple(attn))
