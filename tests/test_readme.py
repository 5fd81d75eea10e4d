"""The README documents what the code does: every config key, every command, the Quickstart; it
stays short, and its results are RESULTS.md's (generated), not prose pinned by tests."""
import re
from pathlib import Path

from spd.arguments import build_parser
from spd.config import FinetuneConfig
from spd.overrides import _leaf_keys

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_every_config_key_is_documented():
    missing = [k for k in _leaf_keys(FinetuneConfig) if f"`{k}`" not in README]
    assert not missing, f"README lacks config keys {missing}"


def test_every_command_is_documented():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    missing = [c for c in sub.choices if f"spd {c}" not in README]
    assert not missing, f"README lacks commands {missing}"


def test_quickstart_is_two_commands():
    quick = README.split("## Quickstart", 1)[1].split("##", 1)[0]
    block = quick.split("```", 2)[1].splitlines()
    assert [line.strip() for line in block if line.strip()] == ["make run", "make test"]


def test_the_readme_is_short_and_states_the_pair_data_caveat_once():
    assert len(README.splitlines()) <= 260
    assert README.count("SNLI, MultiNLI and QQP") == 1


def test_the_headline_table_is_the_one_results_md_generates_from_the_records():
    from ablations import results_md
    from ablations.registry import build_parser as grid_parser
    from ablations.registry import grid
    from ablations.tables import collect

    argv = ["budget", "--seeds", "5", "--tasks", *results_md.BUDGET_TASKS,
            "--results", str(ROOT / "ablations" / "results")]
    cells, finals = collect("budget", grid(grid_parser().parse_args(argv)),
                            ROOT / "ablations" / "results")
    block = README.split("<!-- headline:begin -->\n", 1)[1].split("<!-- headline:end -->", 1)[0]
    assert block == "\n".join(results_md.headline(cells, finals)) + "\n"


def test_every_figure_in_the_findings_is_held_by_a_committed_record():
    """Each figure the findings cite with 3 or more decimals is a metric of a committed record
    (its dev, train-subset, baseline or teacher metrics) or a figure of the generated RESULTS.md
    (a mean, an interval over seeds or a p value such as 0.00282), at the decimals it is cited
    with: findings left behind by new runs fail here."""
    from spd import records

    held: list[tuple[float, int]] = []  # (value, decimals it is known to)

    def walk(node):
        if isinstance(node, dict):
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
        elif isinstance(node, float):
            held.append((node, 17))

    for _, rec in records.under(ROOT / "ablations" / "results"):
        walk({k: rec[k] for k in ("dev", "train_subset", "majority_dev", "teacher") if rec.get(k)})
    number = r"(?<![\w.])\d\.\d{3,}(?!\d)"
    held += [(float(x), len(x) - 2) for x in
             re.findall(number, (ROOT / "RESULTS.md").read_text())]
    findings = README.split("Five findings", 1)[1].split("## Where everything else is", 1)[0]
    cited = re.findall(number, findings)

    def is_held(c: str) -> bool:
        d = len(c) - 2
        return any(places >= d and round(v, d) == round(float(c), d) for v, places in held)

    assert cited and not [c for c in cited if not is_held(c)]
