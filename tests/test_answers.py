"""RESULTS.md's answers to the paper's claims: yes, no or unclear from paired seeds, Holm across
the claims, with the detectable difference beside each."""
import pytest
from scipy import stats as sps

from ablations import answers

GMP = "no distillation (GMP, hard labels)"


def ask(rows_of: dict) -> dict:
    qs = [q for q in answers.questions(["mrpc"]) if q.grid == "components"]
    return {f["question"].other: f for f in answers.answer(qs, rows_of)}


def test_a_clear_win_is_yes_a_clear_loss_is_no_and_noise_is_unclear():
    spd = {0: 0.84, 1: 0.85, 2: 0.86, 3: 0.845, 4: 0.855}
    rows_of = {
        ("components", "mrpc", "dev", "SPD"): spd,
        ("components", "mrpc", "dev", GMP): {s: v - 0.05 - 0.001 * s for s, v in spd.items()},
        ("components", "mrpc", "dev", "movement + logit distillation"):
            {s: v + 0.04 + 0.001 * s for s, v in spd.items()},
        ("components", "mrpc", "dev", "no progressive replacing (p = 1)"):
            {0: 0.85, 1: 0.84, 2: 0.87, 3: 0.83, 4: 0.86},
    }
    got = ask(rows_of)
    assert got[GMP]["verdict"] == "yes" and got[GMP]["diff"] == pytest.approx(0.052)
    assert got["movement + logit distillation"]["verdict"] == "no"
    noise = got["no progressive replacing (p = 1)"]
    assert noise["verdict"] == "unclear" and noise["detectable"] > abs(noise["diff"])
    # Holm over the three claims: the smallest p times 3
    p = sps.ttest_rel(list(spd.values()), list(rows_of[("components", "mrpc", "dev", GMP)]
                                               .values())).pvalue
    ps = sorted(f["p"] for f in got.values())
    assert min(f["p_holm"] for f in got.values()) == pytest.approx(3 * ps[0])
    assert got[GMP]["p"] == pytest.approx(p)


def test_too_few_paired_seeds_is_unclear_and_says_so():
    rows_of = {("components", "mrpc", "dev", "SPD"): {0: 0.84},
               ("components", "mrpc", "dev", GMP): {0: 0.70, 1: 0.71}}
    got = ask(rows_of)[GMP]
    assert got["verdict"] == "unclear" and got["n"] == 1 and got["p"] is None
    lines = answers.to_markdown([got])
    assert "| mrpc | SPD beats GMP at 0.9 (dev; components) | **unclear** |" in lines[2]
    assert "(n 1) | - | - | - |" in lines[2]
    none = ask({("components", "mrpc", "dev", "SPD"): {0: 0.84}})[GMP]
    assert none["verdict"] == "not run yet" and none["diff"] is None


def test_the_gap_claims_read_smaller_as_better_for_spd():
    gmp9, spd9 = {0: 0.20, 1: 0.22, 2: 0.21}, {0: 0.05, 1: 0.06, 2: 0.055}
    rows_of = {("overfitting", "mrpc", "gap", "GMP s0.9"): gmp9,
               ("overfitting", "mrpc", "gap", "SPD s0.9"): spd9,
               ("overfitting", "mrpc", "gap", "GMP s0.5"): {0: 0.10, 1: 0.13, 2: 0.11}}
    qs = [q for q in answers.questions(["mrpc"]) if q.quantity == "gap"]
    got = {f["question"].text: f["verdict"] for f in answers.answer(qs, rows_of)}
    assert got == {"without distillation the train - dev gap grows from 0.5 to 0.9": "yes",
                   "SPD's train - dev gap at 0.9 is smaller than GMP's": "yes"}


def test_a_comparison_asked_twice_on_the_same_runs_is_one_member_of_the_holm_family():
    # "SPD beats GMP at 0.9" (components) and "SPD's dev metric at 0.9 is better than GMP's"
    # (overfitting) read the same shared cells: one test, which must not double Holm's family.
    spd, gmp = {0: 0.84, 1: 0.85, 2: 0.86}, {0: 0.77, 1: 0.76, 2: 0.79}
    rows_of = {("components", "mrpc", "dev", "SPD"): spd, ("components", "mrpc", "dev", GMP): gmp,
               ("overfitting", "mrpc", "dev", "SPD s0.9"): spd,
               ("overfitting", "mrpc", "dev", "GMP s0.9"): gmp,
               ("components", "mrpc", "dev", "no progressive replacing (p = 1)"):
                   {0: 0.85, 1: 0.84, 2: 0.87}}
    found = answers.answer(answers.questions(["mrpc"]), rows_of)
    by = {(f["question"].grid, f["question"].other): f for f in found}
    twice = by[("components", GMP)], by[("overfitting", "GMP s0.9")]
    other = by[("components", "no progressive replacing (p = 1)")]
    assert twice[0]["p"] == twice[1]["p"] < other["p"]
    assert twice[0]["p_holm"] == twice[1]["p_holm"] == pytest.approx(2 * twice[0]["p"])
    assert other["p_holm"] == pytest.approx(max(other["p"], 2 * twice[0]["p"]))


def test_a_row_at_the_constant_prediction_is_marked_where_a_claim_compares_with_it():
    """A yes against a collapsed competitor says only that SPD beats a constant predictor: the
    answer marks such a row † as the tables do."""
    spd = {0: 0.84, 1: 0.85, 2: 0.86}
    movement = "movement + logit distillation"
    rows_of = {("components", "mrpc", "dev", "SPD"): spd,
               ("components", "mrpc", "dev", movement): {s: 0.8122 for s in spd},
               ("components", "mrpc", "dev", GMP): {s: v - 0.05 - 0.001 * s for s, v in spd.items()}}
    qs = [q for q in answers.questions(["mrpc"]) if q.grid == "components"]
    found = answers.answer(qs, rows_of, collapsed={("components", "mrpc", movement)})
    lines = {f["question"].other: line for f, line in zip(found, answers.to_markdown(found)[2:])}
    assert f"{movement}: 0.8122 [0.8122, 0.8122] (n 3) †" in lines[movement]
    assert "†" not in lines[GMP]
