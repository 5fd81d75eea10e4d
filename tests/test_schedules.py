"""Schedule properties: each schedule is a pure function of the step."""
from hypothesis import example, given, strategies as st

from spd.schedules import cubic_sparsity, warmup_linear_decay


@st.composite
def cubic_configs(draw):
    s_i = draw(st.floats(0, 0.9))
    s_f = draw(st.floats(s_i, 0.99))
    return dict(s_i=s_i, s_f=s_f, start=draw(st.integers(0, 50)), window=draw(st.integers(0, 200)),
                interval=draw(st.integers(1, 40)))


def _values(cfg, horizon=300):
    return [cubic_sparsity(t, **cfg) for t in range(horizon)]


@given(cubic_configs())
@example(dict(s_i=0.0, s_f=0.9, start=0, window=1, interval=1))
@example(dict(s_i=0.0, s_f=0.9, start=5, window=0, interval=3))
@example(dict(s_i=0.0, s_f=0.9, start=0, window=10, interval=4))
def test_cubic_sparsity_properties(cfg):
    vals = _values(cfg)
    start, end = cfg["start"], cfg["start"] + cfg["window"]
    assert all(cfg["s_i"] <= v <= cfg["s_f"] + 1e-12 for v in vals)
    assert all(v == cfg["s_i"] for v in vals[:start])
    assert all(v == cfg["s_f"] for v in vals[end:])
    assert all(b >= a for a, b in zip(vals, vals[1:]))
    updates = {t for t in range(start, end, cfg["interval"])} | {end}
    changes = [t for t in range(1, len(vals)) if vals[t] != vals[t - 1]]
    assert set(changes) <= updates
    # The update at t_0 sets s_i (no change); from the next one on, the cubic decay of the
    # remaining gap means each update adds no more than the one before (1e-12: round-off).
    increments = [vals[t] - vals[t - 1] for t in sorted(updates) if start < t < len(vals)]
    assert all(b <= a + 1e-12 for a, b in zip(increments, increments[1:]))


@given(st.integers(1, 500), st.data())
def test_warmup_linear_decay_shape(total, data):
    warmup = data.draw(st.integers(0, total - 1))
    vals = [warmup_linear_decay(t, total, warmup) for t in range(total + 5)]
    assert all(0 <= v <= 1 for v in vals)
    assert vals[total] == 0 and (warmup == 0 or vals[0] == 0)
    peak = vals.index(max(vals))
    assert peak == warmup
    assert all(b >= a for a, b in zip(vals[:peak], vals[1:peak + 1]))
    assert all(b <= a for a, b in zip(vals[peak:], vals[peak + 1:]))


from spd.schedules import constant_rate, linear_rate, three_stage_rate  # noqa: E402

probabilities = st.floats(0, 1)


@given(probabilities, st.integers(0, 100), st.integers(0, 100), st.integers(0, 100))
@example(0.5, 0, 0, 5)
@example(0.0, 3, 1, 1)
def test_three_stage_rate(p_0, prune, graft, final):
    prune_end, graft_end = prune, prune + graft
    vals = [three_stage_rate(t, p_0, prune_end, graft_end) for t in range(graft_end + final + 3)]
    assert all(0 <= v <= 1 for v in vals)
    assert all(b >= a for a, b in zip(vals, vals[1:]))
    assert all(v == p_0 for v in vals[:prune_end])
    assert all(v == 1.0 for v in vals[graft_end:])


@given(probabilities, st.floats(0, 0.1), st.integers(0, 10 ** 6))
def test_linear_and_constant_rates(p_0, k, step):
    assert constant_rate(step, p_0) == p_0
    p = linear_rate(step, p_0, k)
    assert 0 <= p <= 1 and p >= p_0 - 1e-12 and linear_rate(step + 1, p_0, k) >= p
    assert linear_rate(step, p_0, 0.0) == p_0


from spd.schedules import stage_ends, staged_lr  # noqa: E402


@given(st.integers(0, 60), st.integers(0, 60), st.integers(0, 60), st.booleans())
@example(1, 0, 0, True)
@example(0, 0, 1, True)
def test_staged_lr(prune, graft, finetune, restart):
    ends = stage_ends(prune, graft, finetune)
    assert ends[0] <= ends[1] <= ends[2] == prune + graft + finetune
    vals = [staged_lr(t, ends, restart) for t in range(ends[-1] + 3)]
    assert all(0 <= v <= 1 for v in vals)
    assert all(v == 0 for v in vals[ends[-1]:])
    starts = sorted({b for b in (0, *ends[:-1]) if b < ends[-1]})
    for t in range(1, ends[-1]):
        if vals[t] > vals[t - 1]:  # the rate only rises where a stage restarts it
            assert restart and t in starts
    if restart:
        assert all(vals[s] == 1.0 for s in starts)
