"""The shared run section (`RunConfig`) and the dense fine-tuning tree built on it; SPD's tree
is `spd.distil_config`, the named recipes of both are `spd.presets`. Frozen dataclasses,
validated on construction.
"""
import math
from dataclasses import dataclass, field

from spd.device import PRECISIONS
from spd.models import DEFAULT_MODEL
from spd.tasks import get_task
from spd.validate import check, choice, nonneg, positive


@dataclass(frozen=True)
class DataConfig:
    """Tokenisation and batching.

    Attributes:
        max_length: truncate each example (pair) to this many tokens; batches are padded only
            to their own longest example.
        batch_size: training batch size.
        eval_batch_size: batch size for evaluation.
        train_eval_size: examples in the fixed train subset evaluated beside dev (the train/dev
            gap is the overfitting signal); 0 turns it off.
        group_by_length: batch training examples of similar length (seeded: chunks of the
            shuffled order sorted by length, batches shuffled), so that less of each batch is
            padding; off: plain shuffled batches.
    """

    max_length: int = 128
    batch_size: int = 32
    eval_batch_size: int = 128
    train_eval_size: int = 1000
    group_by_length: bool = False

    def __post_init__(self):
        check("data.max_length", self.max_length, self.max_length >= 8, "an integer >= 8")
        check("data.batch_size", self.batch_size, self.batch_size >= 1, "an integer >= 1")
        check("data.eval_batch_size", self.eval_batch_size, self.eval_batch_size >= 1,
               "an integer >= 1")
        check("data.train_eval_size", self.train_eval_size, self.train_eval_size >= 0,
               "an integer >= 0")


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with linear warm-up and linear decay, gradient clipping.

    Attributes:
        lr: peak learning rate.
        weight_decay: AdamW weight decay (not applied to biases and LayerNorm weights).
        warmup_ratio: fraction of the steps spent warming up linearly from 0.
        grad_clip: maximum global gradient norm; 0 turns clipping off.
        epochs: passes over the training set.
        max_steps: stop after this many steps if > 0 (caps long tasks such as SST-2).
    """

    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    grad_clip: float = 1.0
    epochs: int = 4
    max_steps: int = 0

    def __post_init__(self):
        positive("optim.lr", self.lr)
        nonneg("optim.weight_decay", self.weight_decay)
        check("optim.warmup_ratio", self.warmup_ratio,
               math.isfinite(self.warmup_ratio) and 0 <= self.warmup_ratio < 1, "a number in [0, 1)")
        nonneg("optim.grad_clip", self.grad_clip)
        check("optim.epochs", self.epochs, self.epochs >= 1, "an integer >= 1")
        check("optim.max_steps", self.max_steps, self.max_steps >= 0, "an integer >= 0 (0: no cap)")


@dataclass(frozen=True)
class RunConfig:
    """The run section both trees build on: what any training run of spd has.

    Attributes:
        task: GLUE task name.
        seed: seeds data order, dropout and everything else random in the run.
        eval_every: evaluate dev and the train subset every this many steps; 0 means once per
            epoch. The last step is always evaluated.
        checkpoint_every: save a checkpoint every this many steps for `--resume`; 0 means at
            each evaluation. Deleted when the run finishes.
        compile: run the (teacher's) training forward pass through `torch.compile` (dynamic
            shapes); SPD's grafted, masked student stays eager.
        precision: auto (bf16 autocast on CUDA, fp32 on the CPU), fp32, or bf16 (autocast on
            either device; master weights, masks and optimizer state stay fp32).
    """

    task: str = "mrpc"
    seed: int = 42
    eval_every: int = 0
    checkpoint_every: int = 0
    compile: bool = False
    precision: str = "auto"
    data: DataConfig = field(default_factory=DataConfig)

    def __post_init__(self):
        get_task(self.task)
        check("seed", self.seed, 0 <= self.seed < 2 ** 32, "an integer in [0, 2**32)")
        check("eval_every", self.eval_every, self.eval_every >= 0, "an integer >= 0")
        check("checkpoint_every", self.checkpoint_every, self.checkpoint_every >= 0,
               "an integer >= 0")
        choice("precision", self.precision, PRECISIONS)


@dataclass(frozen=True)
class FinetuneConfig(RunConfig):
    """Dense fine-tuning of a teacher (the run section, plus the model and its optimiser).

    Attributes:
        model: `minilm` (the packaged all-MiniLM-L6-v2), a hub id or a local folder; the seed
            also initialises its classifier head.
    """

    model: str = DEFAULT_MODEL
    optim: OptimConfig = field(default_factory=OptimConfig)

    def __post_init__(self):
        super().__post_init__()
        check("model", self.model, bool(self.model), "a non-empty hub id or folder")
