"""The teacher-output cache: the pure teacher's outputs on the training examples, computed once,
equal (fp32) to running the teacher on every batch wherever the loss looks."""
import pytest
import torch
from transformers import AutoModelForSequenceClassification

from spd import data, losses
from spd.errors import SpdError
from spd.presets import spd_config
from spd.tasks import get_task
from spd.teacher_cache import TeacherCache, teacher_outputs

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def teacher(tiny_model_dir):
    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_pretrained(
        tiny_model_dir, num_labels=2, attn_implementation="eager").eval()


def _examples(n=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        k = 4 + int(torch.randint(0, 9, (1,), generator=g))
        ids = [101, *torch.randint(1000, 5000, (k - 2,), generator=g).tolist(), 102]
        out.append({"input_ids": ids, "token_type_ids": [0] * (k // 2) + [1] * (k - k // 2),
                    "label": i % 2})
    return out


def _inputs(examples, width=None):
    batch = data.collate(examples, pad_id=0)
    if width:  # extra padding beyond the batch's longest example
        extra = width - batch["input_ids"].shape[1]
        batch = {k: torch.nn.functional.pad(v, (0, extra)) if v.dim() == 2 else v
                 for k, v in batch.items()}
    return {k: v for k, v in batch.items() if k != "labels"}


def _assert_equal_where_the_loss_looks(cached, direct, mask):
    """Logits, and hidden states and attention probabilities at real tokens (fp32 rounding)."""
    tol = dict(rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(cached.logits, direct.logits, **tol)
    for r, n in enumerate(mask.sum(1).tolist()):
        for c, d in zip(cached.hidden_states, direct.hidden_states, strict=True):
            torch.testing.assert_close(c[r, :n], d[r, :n], **tol)
        for c, d in zip(cached.attentions, direct.attentions, strict=True):
            torch.testing.assert_close(c[r, :, :n, :n], d[r, :, :n, :n], **tol)


def test_cached_outputs_equal_the_teachers_on_any_batch_of_training_examples(teacher):
    examples = _examples()
    cache = TeacherCache(teacher, examples, pad_id=0, device=CPU, precision="fp32",
                         batch_size=5, budget_bytes=2 ** 30)
    assert cache.cached == len(examples)
    inputs = _inputs([examples[i] for i in (7, 2, 11, 0)], width=16)
    direct = teacher_outputs(teacher, inputs, CPU, "fp32")
    _assert_equal_where_the_loss_looks(cache(inputs), direct, inputs["attention_mask"])
    assert cache.hits == 4 and cache.misses == 0


def test_perturbed_rows_miss_and_run_through_the_teacher(teacher):
    examples = _examples()
    cache = TeacherCache(teacher, examples, pad_id=0, device=CPU, precision="fp32",
                         batch_size=5, budget_bytes=2 ** 30)
    inputs = _inputs([examples[i] for i in (3, 4, 5)])
    inputs["input_ids"][1, 2] = 4321  # a perturbed copy: not a training example
    direct = teacher_outputs(teacher, inputs, CPU, "fp32")
    _assert_equal_where_the_loss_looks(cache(inputs), direct, inputs["attention_mask"])
    assert (cache.hits, cache.misses) == (2, 1)


def test_a_small_budget_caches_what_fits_and_computes_the_rest(teacher):
    examples = _examples()
    full = TeacherCache(teacher, examples, 0, CPU, "fp32", 5, 2 ** 30)
    part = TeacherCache(teacher, examples, 0, CPU, "fp32", 5, full.bytes // 2)
    assert 0 < part.cached < len(examples) and part.bytes <= full.bytes // 2
    inputs = _inputs(examples[:8])
    _assert_equal_where_the_loss_looks(part(inputs), full(inputs), inputs["attention_mask"])


def test_the_masked_loss_is_the_same_with_and_without_the_cache(teacher, tiny_model_dir):
    torch.manual_seed(1)
    student = AutoModelForSequenceClassification.from_pretrained(
        tiny_model_dir, num_labels=2, attn_implementation="eager").eval()
    examples = _examples()
    cache = TeacherCache(teacher, examples, 0, CPU, "fp32", 5, 2 ** 30)
    batch = data.collate([examples[i] for i in (1, 6, 9)], pad_id=0)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    s_out = student(**inputs, output_hidden_states=True, output_attentions=True)
    cfg = spd_config("mrpc", "t", "cpu3", ["loss.padding=exclude"]).loss
    task = get_task("mrpc")
    with_cache = losses.spd_loss(s_out, cache(inputs), batch["labels"], task, cfg,
                                 inputs["attention_mask"])[1]
    without = losses.spd_loss(s_out, teacher_outputs(teacher, inputs, CPU, "fp32"),
                              batch["labels"], task, cfg, inputs["attention_mask"])[1]
    for name in with_cache:
        torch.testing.assert_close(with_cache[name], without[name], rtol=1e-5, atol=1e-7)


def test_bf16_runs_store_their_outputs_in_bf16(teacher):
    examples = _examples(4)
    fp32 = TeacherCache(teacher, examples, 0, CPU, "fp32", 4, 2 ** 30)
    bf16 = TeacherCache(teacher, examples, 0, CPU, "bf16", 4, 2 ** 30)
    assert bf16.bytes * 2 == fp32.bytes
    assert bf16(_inputs(examples)).hidden_states[0].dtype == torch.bfloat16


@pytest.mark.parametrize("overrides, named", [
    (["teacher_cache=1"], "teacher_cache"),  # the cache needs the padding left out of the loss
    (["teacher_cache=-1", "loss.padding=exclude"], "teacher_cache"),
    (["loss.padding=some"], "loss.padding"),
])
def test_bad_cache_settings_are_refused_in_one_line(overrides, named):
    with pytest.raises(SpdError) as e:
        spd_config("mrpc", "teacher", "cpu3", overrides)
    assert named in str(e.value) and "\n" not in str(e.value)
