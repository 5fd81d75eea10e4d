"""Progressive module replacing: teacher and student layers grafted into one model, from outside.

The student model is a deep copy of the fine-tuned teacher whose `base_model.encoder.layer` list
is replaced by `GraftSlot`s. Each slot holds the student layer S_l and the frozen teacher layer
T_l (the teacher model's own module) and runs the one chosen for the step. Both stay registered
submodules, so transformers' output recording (hooks on `BertLayer` / `BertSelfAttention`)
returns hidden states and attention probabilities whichever side runs. Which side runs is
decided outside `forward` by `draw_layers(seed, step, p)` and `set_layers`.
"""
import copy

import numpy as np
import torch
from torch import nn

from spd.pruning import encoder_layers


class GraftSlot(nn.Module):
    """Layer position l: runs `student` when `use_student`, else the frozen `teacher`."""

    def __init__(self, student: nn.Module, teacher: nn.Module, teacher_dropout: bool = False):
        super().__init__()
        self.student, self.teacher = student, teacher
        self.use_student = True
        self.teacher_dropout = teacher_dropout

    def forward(self, *args, **kwargs):
        return (self.student if self.use_student else self.teacher)(*args, **kwargs)

    def train(self, mode: bool = True):
        super().train(mode)
        if not self.teacher_dropout:
            self.teacher.eval()  # the teacher layer runs as in the pure teacher: no dropout
        return self


def make_student(teacher: nn.Module, teacher_dropout: bool = False) -> nn.Module:
    """A deep copy of `teacher` whose encoder layers are grafted with the teacher's own layers.

    The teacher is frozen; in the student only the student layers train (embeddings, pooler and
    classifier frozen, as in the official code; see `set_trainable_rest`). With
    `teacher_dropout`, a grafted teacher layer runs dropout while the student trains (the
    official code; its weights stay frozen either way).
    """
    teacher.requires_grad_(False)
    _install_output_hooks(teacher)
    student = copy.deepcopy(teacher)
    layers = encoder_layers(student)
    student.base_model.encoder.layer = nn.ModuleList(
        GraftSlot(s, t, teacher_dropout) for s, t in zip(layers, encoder_layers(teacher),
                                                         strict=True))
    student.requires_grad_(False)
    for slot in slots(student):
        slot.student.requires_grad_(True)
    return student


def _install_output_hooks(model: nn.Module) -> None:
    """Give every layer of `model` its output-recording hooks before it is copied.

    transformers 5 records hidden states and attentions with forward hooks that a model installs
    on its first forward. A student copied before that would install its own on every layer in
    its tree, the teacher's grafted layers included, which then record twice. Installed first,
    the copy inherits one hook per module and is marked as hooked. (transformers 4 returned
    these outputs from the layer loop, with no hooks: nothing to do.)
    """
    try:
        from transformers.utils.output_capturing import maybe_install_capturing_hooks
    except ImportError:
        return
    maybe_install_capturing_hooks(model)


def slots(student: nn.Module) -> list[GraftSlot]:
    return list(encoder_layers(student))


def student_layers(student: nn.Module) -> nn.ModuleList:
    """The student's own layers (what is pruned), in order."""
    return nn.ModuleList(slot.student for slot in slots(student))


def drop_student_dropout(student: nn.Module) -> None:
    """Set every dropout rate of the student to 0 (its own layers, embeddings and head; the
    grafted teacher layers are left as they are). The saved model's config keeps its rates."""
    teacher_side = {id(m) for slot in slots(student) for m in slot.teacher.modules()}
    for m in student.modules():
        if isinstance(m, nn.Dropout) and id(m) not in teacher_side:
            m.p = 0.0


def set_trainable_head(student: nn.Module, trainable: bool) -> None:
    """Make the pooler and classifier trainable (or frozen, the default): every parameter
    outside the encoder layers and the embeddings."""
    inner = {id(p) for slot in slots(student) for p in slot.parameters()}
    inner |= {id(p) for p in student.base_model.embeddings.parameters()}
    for p in student.parameters():
        if id(p) not in inner:
            p.requires_grad_(trainable)


def set_trainable_rest(student: nn.Module, trainable: bool) -> None:
    """Make embeddings, pooler and classifier trainable (or frozen, the default)."""
    layer_ids = {id(p) for slot in slots(student) for p in slot.parameters()}
    for p in student.parameters():
        if id(p) not in layer_ids:
            p.requires_grad_(trainable)


def draw_layers(seed: int, step: int, p: float, n_layers: int) -> torch.Tensor:
    """One Bernoulli(p) draw per layer: True runs the student layer at that position.

    A function of (seed, step) only, so every process and every resume draws the same layers.
    """
    state = np.random.SeedSequence([seed, step]).generate_state(2)
    g = torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
    return torch.rand(n_layers, generator=g, dtype=torch.float64) < p


def set_layers(student: nn.Module, use_student: torch.Tensor) -> None:
    for slot, flag in zip(slots(student), use_student.tolist(), strict=True):
        slot.use_student = bool(flag)


def export_student(student: nn.Module) -> nn.Module:
    """A plain Hugging Face model holding the student layers (a copy; `student` is unchanged)."""
    out = copy.deepcopy(student)
    out.base_model.encoder.layer = nn.ModuleList(slot.student for slot in slots(out))
    return out
