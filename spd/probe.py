"""Statements A to D on Hugging Face models: the adapter from transformers layers to
`theory`'s plain functions, the training-time probe of statement D, and the full check of an
SPD run against its teacher on real dev data.

    spd theory RUN_DIR [--output DIR] [--examples 32] [--data-dir D]

The layers are the encoder layers of the two models (embeddings, pooler and head are shared
and frozen in SPD, so the statements are about the encoder), run in float64 on the embedding
output of `--examples` dev examples with their attention mask. The Lipschitz constants are
local estimates (power iteration on the Jacobian at points between the teacher's and the
student's hidden states), so the checks are numerical evidence, not certificates. Writes
theory.json, theory.md and two plots into `--output` (default: the run folder).
"""
import copy
import logging
from pathlib import Path

import torch

from spd import data, rundir
from spd.errors import SpdError
from spd.models import check_same_architecture, load_classifier, load_tokenizer
from spd.pruning import encoder_layers
from spd.tasks import get_task
from theory import bounds
from theory.lipschitz import local_lipschitz

log = logging.getLogger(__name__)
P_GRID = tuple(i / 10 for i in range(11))


def layer_functions(model, inputs: dict) -> tuple[torch.Tensor, list]:
    """The embedding output and each encoder layer as a function of hidden states alone, with
    the attention mask the model itself passes its layers (captured by a pre-hook)."""
    layers = encoder_layers(model)
    captured = {}

    def grab(module, args, kwargs):
        captured["h"], captured["kwargs"] = args[0], dict(kwargs)
        captured["args"] = args[1:]

    handle = layers[0].register_forward_pre_hook(grab, with_kwargs=True)
    try:
        with torch.no_grad():
            model(**inputs)
    finally:
        handle.remove()
    kwargs = {k: v for k, v in captured["kwargs"].items()
              if k not in ("output_attentions", "output_hidden_states")}

    def as_function(layer):
        def f(h):
            out = layer(h, *captured["args"], **kwargs)
            return out[0] if isinstance(out, tuple) else out
        return f

    return captured["h"].detach(), [as_function(layer) for layer in layers]


def _float64_layers(teacher, student, inputs: dict):
    """Float64 eval copies of both models (the originals are left as they are) as layer
    functions, the shared embedding output x, and the teacher's and student's hidden states."""
    teacher, student = (copy.deepcopy(m).double().eval() for m in (teacher, student))
    for param in [*teacher.parameters(), *student.parameters()]:
        param.requires_grad_(False)  # jvp/vjp differentiate with respect to the input only
    x, T = layer_functions(teacher, inputs)
    x_s, S = layer_functions(student, inputs)
    if not torch.equal(x, x_s):
        raise ValueError("teacher and student embeddings differ; the statements assume shared "
                         "(frozen) embeddings")
    with torch.no_grad():
        t = bounds.states(T, x)
        s = bounds.states(S, x)
    return T, S, x, t, s


def _module_errors(T, S, t, s) -> dict:
    """e_l per layer on the teacher's and on the student's own inputs."""
    return {"teacher_inputs": [bounds.module_error(T[l], S[l], t[l]) for l in range(len(T))],
            "student_inputs": [bounds.module_error(T[l], S[l], s[l]) for l in range(len(T))]}


def check_models(teacher, student, inputs: dict, p_grid=P_GRID, lip_points: int = 3,
                 lip_iters: int = 10) -> dict:
    """Every statement's measured value and bound, per layer and per p (float64)."""
    T, S, x, t, s = _float64_layers(teacher, student, inputs)
    L = len(T)
    # Local constants on the segment between the teacher's and the student's input to each layer.
    K = [local_lipschitz(T[l], t[l], s[l], lip_points, lip_iters) for l in range(L)]
    Kp = [local_lipschitz(S[l], t[l], s[l], lip_points, lip_iters) for l in range(L)]
    with torch.no_grad():
        en = bounds.enumerate_sets(T, S, x, K)
        checks = {
            "A": bounds.telescoping(T, S, x),
            "B1": bounds.student_inputs(T, S, x, K),
            "B2": bounds.teacher_inputs(T, S, x, Kp),
            "C": [bounds.one_grafted(T, S, x, K, l) for l in range(L)],
            "D": [en.check(p) for p in p_grid],
        }
        module_errors = {**_module_errors(T, S, t, s),
                         "hybrid_inputs_p0.5": en.mean_module_errors(0.5)}
    return {
        "layers": L, "K_teacher": K, "K_student": Kp, "module_errors": module_errors,
        "output_norm_teacher": bounds.norm(t[-1]),
        "checks": {k: [c.as_row() for c in v] if isinstance(v, list) else v.as_row()
                   for k, v in checks.items()},
        "D_p": list(p_grid),  # the replacing probability of each row of checks["D"]
        "D_linear_bound": [{"p": p, "bound": en.linear_bound(p)} for p in p_grid],
        "D_polynomial": en.polynomial(),
    }


def probe(teacher, student, inputs: dict, p: float, lip_points: int = 2,
          lip_iters: int = 5) -> dict:
    """Statement D at one replacing probability p, cheaply enough to run at every evaluation
    of SPD training: the module errors per layer on teacher, student and hybrid inputs (the
    hybrid ones are ebar_l(p)), the local teacher constants, and E_R ||f_R - f_T|| (exact, by
    enumeration) against its D bound. Float64 copies; the models are left unchanged."""
    T, S, x, t, s = _float64_layers(teacher, student, inputs)
    L = len(T)
    K = [local_lipschitz(T[l], t[l], s[l], lip_points, lip_iters) for l in range(L)]
    with torch.no_grad():
        en = bounds.enumerate_sets(T, S, x, K)
        return {
            "p": p, "K_teacher": K, "lip_points": lip_points, "lip_iters": lip_iters,
            "module_errors": {**_module_errors(T, S, t, s),
                              "hybrid_inputs": en.mean_module_errors(p)},
            "output_norm_teacher": bounds.norm(t[-1]),
            "student_error": bounds.norm(s[-1] - t[-1]),
            "D": en.check(p).as_row(),
        }


def report_md(result: dict, meta: dict) -> str:
    c = result["checks"]
    a = c["A"]
    lines = [f"# Error bounds of progressive distillation: {meta['run']}", "",
             f"Command: `{meta['command']}`", "",
             f"Teacher `{meta['teacher']}`, student `{meta['run']}` (sparsity "
             f"{meta['sparsity']:.4f}); {meta['examples']} {meta['task']} dev examples as one "
             f"batch, float64. Norms are Frobenius over examples x tokens x features (padding "
             f"included; the layers see the model's own attention mask). The Lipschitz constants "
             f"are local estimates (largest Jacobian spectral norm found by {meta['lip_iters']} "
             f"power iterations at {meta['lip_points']} points between the teacher's and the "
             f"student's input to each layer): these checks are numerical evidence, not "
             f"certificates. Statements: theory/README.md.", "",
             "| layer | K (teacher, local) | K' (student, local) | e_l on teacher inputs | "
             "e_l on student inputs | e_l on hybrid inputs, p = 0.5 |", "|---|---|---|---|---|---|"]
    me = result["module_errors"]
    for l in range(result["layers"]):
        lines.append(f"| {l + 1} | {result['K_teacher'][l]:.3f} | {result['K_student'][l]:.3f} | "
                     f"{me['teacher_inputs'][l]:.4g} | {me['student_inputs'][l]:.4g} | "
                     f"{me['hybrid_inputs_p0.5'][l]:.4g} |")
    lines += ["", f"||f_T(x)|| = {result['output_norm_teacher']:.4g}.", "",
              f"**A** (telescoping identity): residual {a['measured']:.3g} against "
              f"||f_S - f_T|| = {a['bound']:.4g} (rounding only).", "",
              "| statement | measured | bound | slack (bound / measured) | holds |",
              "|---|---|---|---|---|"]
    for row in [c["B1"], c["B2"], *c["C"], *c["D"]]:
        lines.append(f"| {row['statement']} | {row['measured']:.4g} | {row['bound']:.4g} | "
                     f"{bounds.slack_text(row['slack'])} | "
                     f"{'yes' if row['holds'] else '**no**'} |")
    lines += ["", "B1: student inputs, teacher constants; B2: teacher inputs, student constants; "
              "C[l]: only layer l grafted (0-based); D(p): E over random replacement sets, exact "
              "by enumeration of all 2^L sets; its bound is p * sum_l ebar_l(p) * prod_{k>l} K_k.",
              "", "![D: measured vs bound against p](theory_d.png)", "",
              "![module errors per layer](theory_modules.png)", ""]
    return "\n".join(lines)


def plots(result: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="paper")
    d = result["checks"]["D"]
    ps = result["D_p"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(ps, [r["measured"] for r in d], "o-", label="E_R ||f_R - f_T|| (exact)")
    ax.plot(ps, [r["bound"] for r in d], "s--", label="D bound")
    ax.plot(ps, [r["bound"] for r in result["D_linear_bound"]], ":", label="D bound, max e_l (linear)")
    ax.set(xlabel="replacing probability p", ylabel="error (Frobenius)", yscale="log")
    ax.legend()
    fig.savefig(out / "theory_d.png", dpi=90, bbox_inches="tight")
    me = result["module_errors"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    layers = list(range(1, result["layers"] + 1))
    for name, values in me.items():
        ax.plot(layers, values, "o-", label=name.replace("_", " "))
    ax.set(xlabel="layer", ylabel="module error e_l", title="module errors per layer")
    ax.legend()
    fig.savefig(out / "theory_modules.png", dpi=90, bbox_inches="tight")
    plt.close("all")


def check_run(run: Path, output: Path | None, examples: int, data_dir: Path | None,
              command: str) -> str:
    """`spd theory`: check a finished SPD run against its teacher on `examples` dev examples;
    writes theory.json, theory.md and two plots into `output` (default: the run) and returns
    the line to print."""
    run = Path(run)
    final = rundir.read_json(run / rundir.FINAL) if (run / rundir.FINAL).is_file() else None
    if final is None or "teacher" not in final:
        raise SpdError(f"RUN_DIR: {str(run)!r} holds no finished SPD run; allowed: a run folder "
                       f"written by spd prune or spd run")
    if examples < 1:
        raise SpdError(f"--examples: got {examples}; allowed: an integer >= 1")
    task = get_task(final["task"])
    teacher_src = rundir.model_source(final["teacher"])
    tokenizer = load_tokenizer(str(run / rundir.MODEL))
    rows = data.load_split(task, next(iter(task.dev_splits)), data_dir)
    enc = data.encode(rows[:examples], task, tokenizer,
                      rundir.read_json(run / rundir.CONFIG)["data"]["max_length"])
    batch = data.collate(enc, tokenizer.pad_token_id)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    teacher = load_classifier(teacher_src, task)
    student = load_classifier(str(run / rundir.MODEL), task)
    check_same_architecture(teacher, student, teacher_src)
    out = Path(output) if output else run
    out.mkdir(parents=True, exist_ok=True)
    lip_points, lip_iters = 3, 10
    log.info("checking %s against %s on %d %s dev examples", run, teacher_src, len(enc), task.name)
    result = check_models(teacher, student, inputs, lip_points=lip_points, lip_iters=lip_iters)
    meta = {"run": str(run), "teacher": final["teacher"], "task": task.name,
            "sparsity": final["sparsity"], "examples": len(enc), "lip_points": lip_points,
            "lip_iters": lip_iters, "command": command}
    rundir.write_json(out / "theory.json", {"meta": meta, **result})
    rundir.write_text(out / "theory.md", report_md(result, meta))
    plots(result, out)
    bad = [r["statement"] for k, v in result["checks"].items() if k != "A"
           for r in (v if isinstance(v, list) else [v]) if not r["holds"]]
    return (f"theory: {'all bounds hold' if not bad else 'bounds violated: ' + ', '.join(bad)}; "
            f"{out / 'theory.md'}")
