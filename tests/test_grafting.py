"""The grafted model: teacher and student layers mixed per step, from outside transformers."""
import pytest
import torch
from transformers import AutoModelForSequenceClassification

from spd import grafting, pruning


@pytest.fixture()
def pair(tiny_model_dir):
    torch.manual_seed(0)
    teacher = AutoModelForSequenceClassification.from_pretrained(
        tiny_model_dir, num_labels=2, attn_implementation="eager").eval()
    return teacher, grafting.make_student(teacher)


@pytest.fixture()
def batch():
    g = torch.Generator().manual_seed(1)
    mask = torch.ones(3, 9, dtype=torch.long)
    mask[0, 6:] = 0
    return {"input_ids": torch.randint(5, 1000, (3, 9), generator=g), "attention_mask": mask}


def _out(model, batch):
    return model(**batch, output_hidden_states=True, output_attentions=True)


def test_probability_0_with_ones_masks_equals_the_unmodified_model(pair, batch):
    teacher, student = pair
    reference = _out(teacher, batch)
    pruning.attach_masks(pruning.prunable_linears(grafting.student_layers(student)))
    grafting.set_layers(student, torch.zeros(2, dtype=torch.bool))
    out = _out(student.eval(), batch)
    # Bitwise: the same layers run on the same inputs.
    torch.testing.assert_close(out.logits, reference.logits, rtol=0, atol=0)
    assert len(out.hidden_states) == 3 and len(out.attentions) == 2
    for a, b in zip(out.hidden_states + out.attentions, reference.hidden_states + reference.attentions):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_probability_1_equals_the_pure_student(pair, batch):
    teacher, student = pair
    linears = pruning.prunable_linears(grafting.student_layers(student))
    pruning.attach_masks(linears)
    pruning.prune_to(linears, 0.8)
    grafting.set_layers(student, torch.ones(2, dtype=torch.bool))
    mixed = _out(student.eval(), batch)
    plain = grafting.export_student(student)
    torch.testing.assert_close(_out(plain.eval(), batch).logits, mixed.logits, rtol=0, atol=0)
    assert not any(isinstance(m, grafting.GraftSlot) for m in plain.modules())
    # The teacher's layers are untouched by pruning the student.
    assert not any(torch.nn.utils.parametrize.is_parametrized(m)
                   for m in teacher.modules() if isinstance(m, torch.nn.Linear))


def test_mixed_draw_runs_each_position_from_the_drawn_side(pair, batch):
    teacher, student = pair
    with torch.no_grad():  # make the student's layer 1 differ from the teacher's
        grafting.student_layers(student)[1].output.dense.bias.add_(1.0)
    grafting.set_layers(student, torch.tensor([True, False]))
    mixed = _out(student.eval(), batch)
    ref = _out(teacher, batch)
    torch.testing.assert_close(mixed.logits, ref.logits, rtol=0, atol=0)  # layer 1 is the teacher's
    grafting.set_layers(student, torch.tensor([False, True]))
    assert not torch.equal(_out(student, batch).logits, ref.logits)


def test_attention_probabilities_are_returned(pair, batch):
    _, student = pair
    grafting.set_layers(student, torch.tensor([True, False]))
    out = _out(student.eval(), batch)  # the student runs before the teacher ever has
    assert len(out.hidden_states) == 3 and len(out.attentions) == 2
    for att in out.attentions:
        torch.testing.assert_close(att.sum(-1), torch.ones_like(att.sum(-1)), rtol=0, atol=1e-5)


def test_only_student_layers_train_by_default(pair):
    _, student = pair
    trainable = {n for n, p in student.named_parameters() if p.requires_grad}
    assert trainable and all(".student." in n for n in trainable)
    grafting.set_trainable_rest(student, True)
    assert any("classifier" in n for n, p in student.named_parameters() if p.requires_grad)
    assert not any(".teacher." in n for n, p in student.named_parameters() if p.requires_grad)


def test_train_head_trains_pooler_and_classifier_but_not_the_embeddings(pair):
    _, student = pair
    grafting.set_trainable_head(student, True)
    trainable = {n for n, p in student.named_parameters() if p.requires_grad}
    assert any("classifier" in n for n in trainable) and any("pooler" in n for n in trainable)
    assert not any("embeddings" in n or ".teacher." in n for n in trainable)
    assert all(".student." in n or n.startswith(("classifier", "bert.pooler")) for n in trainable)


def test_teacher_layers_stay_in_eval_mode(pair):
    _, student = pair
    student.train()
    for slot in grafting.slots(student):
        assert slot.student.training and not slot.teacher.training


def test_grafted_teacher_layers_drop_out_when_asked(tiny_model_dir, batch):
    """graft_teacher_dropout (the official code): a grafted teacher layer runs in train mode
    while the student trains, so two forwards at p = 0 differ; its weights stay frozen."""
    torch.manual_seed(0)
    teacher = AutoModelForSequenceClassification.from_pretrained(
        tiny_model_dir, num_labels=2, attn_implementation="eager", hidden_dropout_prob=0.3).eval()
    student = grafting.make_student(teacher, teacher_dropout=True).train()
    grafting.set_layers(student, torch.zeros(2, dtype=torch.bool))
    assert all(slot.teacher.training for slot in grafting.slots(student))
    assert not any(p.requires_grad for slot in grafting.slots(student)
                   for p in slot.teacher.parameters())
    assert not torch.equal(_out(student, batch).logits, _out(student, batch).logits)
    student.eval()
    assert not any(slot.teacher.training for slot in grafting.slots(student))


def test_draws_are_a_function_of_seed_and_step():
    a = grafting.draw_layers(seed=7, step=3, p=0.5, n_layers=12)
    assert torch.equal(a, grafting.draw_layers(seed=7, step=3, p=0.5, n_layers=12))
    assert a.dtype == torch.bool and a.shape == (12,)
    draws = {tuple(grafting.draw_layers(7, s, 0.5, 12).tolist()) for s in range(20)}
    assert len(draws) > 10
    # ... and of the seed: two seeds give two different sequences of draws.
    other = {tuple(grafting.draw_layers(8, s, 0.5, 12).tolist()) for s in range(20)}
    assert draws != other
    assert grafting.draw_layers(7, 3, 0.0, 12).sum() == 0
    assert grafting.draw_layers(7, 3, 1.0, 12).all()


# Significance level of the statistical tests below. The draws are seeded, so each test is
# deterministic: it either always passes or always fails for this code; alpha says how
# surprising a failure would be for a correct sampler.
ALPHA = 1e-3


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_student_frequency_matches_p(p):
    from scipy import stats

    draws = torch.stack([grafting.draw_layers(42, step, p, 6) for step in range(2000)])
    k, n = int(draws.sum()), draws.numel()
    assert stats.binomtest(k, n, p).pvalue > ALPHA
    for layer in range(6):  # and at every position alone
        assert stats.binomtest(int(draws[:, layer].sum()), 2000, p).pvalue > ALPHA


def test_layers_are_drawn_independently():
    from scipy import stats

    draws = torch.stack([grafting.draw_layers(3, step, 0.5, 6) for step in range(3000)])
    for a, b in [(0, 1), (2, 5), (3, 4)]:  # 2x2 contingency of two positions
        table = [[int(((draws[:, a] == i) & (draws[:, b] == j)).sum()) for j in (0, 1)]
                 for i in (0, 1)]
        assert stats.chi2_contingency(table).pvalue > ALPHA
    # Successive steps are independent too (no stream shared across steps).
    table = [[int(((draws[:-1, 0] == i) & (draws[1:, 0] == j)).sum()) for j in (0, 1)] for i in (0, 1)]
    assert stats.chi2_contingency(table).pvalue > ALPHA


def test_state_dict_round_trip_keeps_the_outputs(pair, batch):
    """A grafted, masked student saved and loaded into a fresh one computes the same thing."""
    teacher, student = pair
    linears = pruning.prunable_linears(grafting.student_layers(student))
    pruning.attach_masks(linears)
    pruning.prune_to(linears, 0.6)
    with torch.no_grad():  # move the student away from the teacher it was copied from
        for p in grafting.student_layers(student).parameters():
            p.add_(0.01 * torch.randn_like(p))
    draw = torch.tensor([True, False])
    grafting.set_layers(student, draw)
    fresh = grafting.make_student(teacher)
    pruning.attach_masks(pruning.prunable_linears(grafting.student_layers(fresh)))
    fresh.load_state_dict(student.state_dict())
    grafting.set_layers(fresh, draw)
    a, b = _out(student.eval(), batch), _out(fresh.eval(), batch)
    torch.testing.assert_close(a.logits, b.logits, rtol=0, atol=0)
    for x, y in zip(a.hidden_states, b.hidden_states):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
    assert pruning.overall_sparsity(pruning.prunable_linears(grafting.student_layers(fresh))) \
        == pytest.approx(0.6, abs=1e-2)


def test_dropping_student_dropout_leaves_the_grafted_teacher_layers(tiny_model_dir):
    teacher = AutoModelForSequenceClassification.from_pretrained(
        tiny_model_dir, num_labels=2, attn_implementation="eager", hidden_dropout_prob=0.3)
    student = grafting.make_student(teacher, teacher_dropout=True)
    grafting.drop_student_dropout(student)
    teacher_side = {id(m) for slot in grafting.slots(student) for m in slot.teacher.modules()}
    rates = [(id(m) in teacher_side, m.p) for m in student.modules()
             if isinstance(m, torch.nn.Dropout)]
    assert all(p == 0.0 for teacher_owned, p in rates if not teacher_owned)
    assert any(p > 0 for teacher_owned, p in rates if teacher_owned)
    student.train()
    grafting.set_layers(student, torch.ones(2, dtype=torch.bool))
    g = torch.Generator().manual_seed(1)
    batch = {"input_ids": torch.randint(5, 1000, (2, 7), generator=g)}
    assert torch.equal(student(**batch).logits, student(**batch).logits)  # no randomness left
