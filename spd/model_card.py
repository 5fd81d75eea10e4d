"""The model card (`model/README.md`, Hugging Face YAML metadata) of an exported teacher or
student, written from its run's saved files once the run has finished."""
import json
from pathlib import Path

from spd import rundir
from spd.models import recorded_config

# The hub id of the packaged default model, for the card's `base_model`.
MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"


def by_kind(per_matrix: dict[str, float]) -> dict[str, float]:
    """Mean sparsity per matrix kind (query, key, ..., FFN output) over the layers; the
    matrices of one kind have one shape, so this is also their pooled sparsity."""
    kinds: dict[str, list[float]] = {}
    for name, value in per_matrix.items():
        kinds.setdefault(name.split(".", 1)[1], []).append(value)
    return {kind: sum(v) / len(v) for kind, v in sorted(kinds.items())}


def _base_model(config: dict, final: dict) -> str:
    """The model a teacher started from; for a student, its teacher's."""
    name = config.get("model")
    if name is None:  # a student: its teacher run's model, else the teacher as named
        teacher = recorded_config(final["teacher"]) or {}
        name = teacher.get("model", final["teacher"])
    return MINILM_HUB_ID if name == "minilm" else name


def _metrics(values: dict) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in sorted(values.items()))


def card(run_dir: Path) -> str:
    run_dir = Path(run_dir)
    final = rundir.read_json(run_dir / rundir.FINAL)
    config = rundir.read_json(run_dir / rundir.CONFIG)
    task, env = final["task"], final["environment"]
    student = "teacher" in final
    metrics = {k: v for k, v in final["dev"].items() if not k.startswith("loss")}
    meta = ["---", "license: apache-2.0", f"base_model: {json.dumps(_base_model(config, final))}",
            "library_name: transformers", "pipeline_tag: text-classification",
            "datasets:", "- nyu-mll/glue", "tags:", "- spd",
            *(["- sparse", "- sparse-progressive-distillation"] if student else []),
            "model-index:", f"- name: {json.dumps(run_dir.name)}", "  results:",
            "  - task:", "      type: text-classification",
            "    dataset:", f"      name: GLUE {task.upper()}", "      type: nyu-mll/glue",
            f"      config: {task}", "      split: validation", "    metrics:",
            *[line for k, v in sorted(metrics.items())
              for line in (f"    - type: {k}", f"      value: {v!r}")], "---", ""]
    what = (f"A {final['sparsity']:.1%}-sparse student of `{final['teacher']}`, pruned and "
            f"distilled with Sparse Progressive Distillation (Huang et al., ACL 2022)"
            if student else "A dense teacher fine-tuned")
    body = [f"# {run_dir.name}", "",
            f"{what} on GLUE {task.upper()} by [spd](https://arxiv.org/abs/2110.08190) "
            f"{env.get('spd', '')} (commit {env.get('git_commit') or 'unknown'}"
            f"{', dirty' if env.get('git_dirty') else ''}).", "",
            f"Dev metrics of the final model (not the best during training): "
            f"{_metrics(metrics)}.", ""]
    if student:
        per_matrix = rundir.read_json(run_dir / "sparsity.json")["per_matrix"]
        teacher = {k: v for k, v in final["teacher_dev"].items() if not k.startswith("loss")}
        prune = config["prune"]
        body += [f"Teacher dev metrics: {_metrics(teacher)}.", "",
                 f"Sparsity of the encoder's linear weights: {final['sparsity']:.4f} overall "
                 f"({prune['pattern']}, {prune['scope']}); by matrix kind:", "",
                 "| matrix | sparsity |", "|---|---|",
                 *[f"| {k} | {v:.4f} |" for k, v in by_kind(per_matrix).items()], "",
                 "The zeros are stored as dense zeros: the model loads with plain "
                 "`AutoModelForSequenceClassification.from_pretrained`.", ""]
    body += [f"Recipe: config hash `{final['config_hash']}` (the run's `config.json`); seed "
             f"{final['seed']}; {final['steps']} steps.", "",
             f"Command: `{' '.join(final.get('command') or ['(not recorded)'])}`", ""]
    return "\n".join(meta + body)


def write(run_dir: Path) -> Path:
    """Write `model/README.md` of a finished run."""
    path = Path(run_dir) / rundir.MODEL / "README.md"
    rundir.write_text(path, card(run_dir))
    return path
