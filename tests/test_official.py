"""The `official` presets against the official SPD code's schedules, step for step on MRPC.

The references below re-implement, from the official `run_glue.py`, only what decides the
schedules: its `Prune` class's update condition and cubic formula, and its two
`get_linear_schedule_with_warmup` schedules on one optimizer, switched per epoch.
"""
import pytest
import torch
from transformers import get_linear_schedule_with_warmup

from spd.presets import spd_config
from spd.schedules import lr_at, make_plan, sparsity_at
from spd.losses import soft_cross_entropy

MRPC_TRAIN = 3668
STEPS_PER_EPOCH = 115  # spd's loader and the official DataLoader: ceil(3668 / 32)


def official_sparsity(n_train: int, prune_epochs: int, total_steps: int, s_f: float) -> list:
    """The target sparsity in force at each step (index t: after t optimizer steps)."""
    freq = int((n_train / 32) * prune_epochs / 12)
    pretrain, sparse_step = 0, int(n_train / 32) * prune_epochs
    total_sparse = sparse_step // freq
    out, current = [], 0.0
    for t in range(total_steps):
        out.append(current)
        t_after = t + 1  # Prune.prune() runs after each optimizer step with t incremented
        if pretrain < t_after < pretrain + sparse_step and (t_after - pretrain) % freq == 0:
            k = (t_after - pretrain) // freq
            current = s_f + (0 - s_f) * (1.0 - k / total_sparse) ** 3
    return out


def official_lr(steps_per_epoch: int, epochs: int, prune_epochs: int) -> list:
    """The learning-rate multiplier of each step under the official two schedules."""
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=1.0)
    t_len = steps_per_epoch * 30  # hard-coded 30 epochs in the official code
    pruning = get_linear_schedule_with_warmup(opt, num_warmup_steps=0, num_training_steps=t_len)
    rest = get_linear_schedule_with_warmup(opt, num_warmup_steps=0, num_training_steps=t_len)
    out = []
    for epoch in range(epochs):
        scheduler = pruning if epoch < prune_epochs else rest
        for _ in range(steps_per_epoch):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            scheduler.step()
    return out


@pytest.mark.parametrize("preset", ["official", "official_readme"])
def test_official_sparsity_schedule_matches_the_official_code_on_mrpc(preset):
    cfg = spd_config("mrpc", "", preset)
    plan = make_plan(cfg, STEPS_PER_EPOCH, MRPC_TRAIN)
    assert (plan.interval, plan.window) == (286, 286 * 11)
    ref = official_sparsity(MRPC_TRAIN, 30, plan.total, cfg.prune.sparsity)
    ours = [sparsity_at(t, cfg, plan) for t in range(plan.total)]
    # Tolerance: the same cubic, with the fraction k / 11 computed as 286 k / 3146.
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)
    changes = [t for t in range(1, plan.total) if ours[t] != ours[t - 1]]
    assert changes == [286 * k for k in range(1, 12)]  # 11 updates, s_f at the last
    assert ours[-1] == cfg.prune.sparsity


@pytest.mark.parametrize("preset", ["official", "official_readme"])
def test_official_lr_schedule_matches_the_official_code_on_mrpc(preset):
    cfg = spd_config("mrpc", "", preset)
    plan = make_plan(cfg, STEPS_PER_EPOCH, MRPC_TRAIN)
    assert plan.total == 60 * STEPS_PER_EPOCH and plan.stage_ends[0] == 30 * STEPS_PER_EPOCH
    ref = official_lr(STEPS_PER_EPOCH, 60, 30)
    ours = [lr_at(t, cfg, plan) for t in range(plan.total)]
    switch = plan.stage_ends[0]
    # The one step where they differ, on purpose: the official code's first step after the
    # switch runs at the finished pruning schedule's last rate, 0 (two schedulers on one
    # optimizer, the second stepped only after that step); spd restarts at the full rate.
    assert ref[switch] == 0.0 and ours[switch] == 1.0
    # Tolerance: LambdaLR multiplies the base rate 1.0 by the same fraction.
    torch.testing.assert_close(ours[:switch] + ours[switch + 1:], ref[:switch] + ref[switch + 1:],
                               rtol=0, atol=1e-12)
    assert cfg.optim.weight_decay == 0 and cfg.optim.warmup_ratio == 0


def test_official_presets_average_soft_ce_over_classes_and_drop_out_grafted_teacher_layers():
    for preset in ("official", "official_readme"):
        cfg = spd_config("mrpc", "", preset)
        assert cfg.loss.soft_ce_classes == "mean" and cfg.graft_teacher_dropout
    cfg = spd_config("mrpc", "", "cpu")
    assert cfg.loss.soft_ce_classes == "sum" and not cfg.graft_teacher_dropout


def test_soft_ce_mean_over_classes_is_the_official_mean():
    g = torch.Generator().manual_seed(0)
    z_s, z_t = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    official = (-torch.softmax(z_t / 2, -1) * torch.log_softmax(z_s / 2, -1)).mean()
    torch.testing.assert_close(soft_cross_entropy(z_s, z_t, 2.0, "mean"), official,
                               rtol=0, atol=0)
    torch.testing.assert_close(soft_cross_entropy(z_s, z_t, 2.0, "sum"), official * 3,
                               rtol=1e-6, atol=1e-7)  # float32 sums in another order


@pytest.mark.parametrize("restart_at", ["every_stage", "prune_end"])
def test_a_warmup_with_restarts_warms_up_each_segment(restart_at):
    cfg = spd_config("mrpc", "", "cpu", ["stages.unit=steps", "stages.prune=100",
                                         "stages.graft=40", "stages.finetune=60",
                                         "optim.warmup_ratio=0.1",
                                         f"optim.restart_at={restart_at}"])
    plan = make_plan(cfg, 10)
    starts = [0, 100, 140] if restart_at == "every_stage" else [0, 100]
    ends = [*starts[1:], 200]
    for start, end in zip(starts, ends):
        warm = round(0.1 * (end - start))
        assert lr_at(start, cfg, plan) == 0.0  # every segment starts warming up from 0
        assert lr_at(start + warm, cfg, plan) == 1.0  # and reaches the full rate
        rising = [lr_at(t, cfg, plan) for t in range(start, start + warm + 1)]
        assert rising == sorted(rising)
        assert lr_at(end - 1, cfg, plan) == pytest.approx(1 / (end - start - warm))


def test_restart_points_without_restarts_are_refused():
    from spd.errors import SpdError

    with pytest.raises(SpdError, match="optim.restart_at"):
        spd_config("mrpc", "", "cpu", ["optim.lr_restart=false", "optim.restart_at=prune_end"])


@pytest.mark.parametrize("per_epoch, cap", [(115, 3000), (2105, 3000), (2105, 7), (40, 0)])
def test_max_steps_scales_every_stage_in_proportion(per_epoch, cap):
    cfg = spd_config("mrpc", "", "cpu", ["stages.prune=6", "stages.graft=1", "stages.finetune=3",
                                         f"stages.max_steps={cap}"])
    plan = make_plan(cfg, per_epoch)
    full = 10 * per_epoch
    if not cap or full <= cap:
        assert plan.stage_ends == (6 * per_epoch, 7 * per_epoch, full)
        return
    assert plan.total == cap
    prune, graft = plan.stage_ends[0], plan.stage_ends[1] - plan.stage_ends[0]
    assert abs(prune - 0.6 * cap) <= 0.5 and abs(graft - 0.1 * cap) <= 0.5
