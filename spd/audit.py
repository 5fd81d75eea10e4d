"""Settings that would silently do nothing or destroy a matrix, found before an SPD run starts
(each a one-line warning the run logs)."""
from spd.distil_config import SPDConfig
from spd.schedules import Plan


def audit(cfg: SPDConfig, plan: Plan, matrix_sizes: dict[str, int] | None = None) -> list[str]:
    """Warnings for settings that silently do nothing or destroy a matrix (each one line).
    `matrix_sizes`: weights per prunable matrix, when the model is known."""
    warnings = []
    weights = (cfg.loss.hidden, cfg.loss.attention, cfg.loss.prediction, cfg.loss.hard)
    if not any(weights):
        warnings.append("every loss weight (loss.hidden, loss.attention, loss.prediction, "
                        "loss.hard) is 0: nothing trains the student")
    if cfg.prune.scope == "per_matrix" and cfg.prune.pattern == "unstructured":
        empty = sorted(name for name, n in (matrix_sizes or {}).items()
                       if round(n * (1 - cfg.prune.sparsity)) == 0)
        if empty:
            warnings.append(f"prune.sparsity={cfg.prune.sparsity!r} keeps round(n (1 - s)) = 0 "
                            f"weights of {len(empty)} matrices (e.g. {empty[0]}): they end "
                            f"all zero")
    r = cfg.replace
    if r.schedule == "linear" and r.slope == 0:
        warnings.append(f"replace.schedule=linear with slope 0 keeps p = {r.p_0} for the whole run: "
                        f"nothing progressive happens (the official README's setting)")
    if cfg.prune.updates and plan.stage_ends[0] < cfg.prune.updates + 1:
        warnings.append(f"the prune stage ({plan.stage_ends[0]} steps) is shorter than one update "
                        f"interval per mask update ({cfg.prune.updates} updates): masks change "
                        f"every step")
    if plan.window >= plan.total and cfg.prune.sparsity > cfg.prune.initial:
        warnings.append(f"target sparsity {cfg.prune.sparsity} is reached only after training "
                        f"ends (pruning window {plan.window} steps, run {plan.total} steps)")
    if cfg.train_rest and cfg.theory_examples:
        warnings.append("train_rest=true trains the student's embeddings, which the error-bound "
                        "statements assume shared with the teacher: the statement D probe is off")
    if plan.stage_ends[2] == plan.stage_ends[1]:
        warnings.append("the final stage (pure student, p = 1) has length 0: the exported student "
                        "never trains alone")
    return warnings
