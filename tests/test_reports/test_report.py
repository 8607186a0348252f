"""The reporter: the paper's highlighting rule, renderers, published numbers, LaTeX that compiles."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.cli import main
from reports.aggregate import aggregate, with_averages
from reports.highlight import highlight
from reports.render import Section, Table, render_html, render_latex, render_markdown
from reports.tables import PAPER_CSV, build_tables, report


def flags(cells):
    return {m: ("blue" if c.blue else "bold" if c.bold else "") for m, c in cells.items()}


def test_bold_is_safe_and_blue_is_the_best_safe_and_close_cheaper_ones():
    cells = highlight({"A": (0.90, 1.5), "B": (0.70, 0.8), "C": (0.67, 0.3), "D": (0.60, 0.1),
                       "E": (0.69, 0.9)})
    assert flags(cells) == {"A": "", "B": "blue", "C": "blue", "D": "bold", "E": "bold"}


def test_edge_cases_of_the_rule():
    # cost exactly 1.0 is not safe
    assert flags(highlight({"A": (0.5, 1.0), "B": (0.1, 0.99)})) == {"A": "", "B": "blue"}
    # nobody safe: nothing highlighted
    assert flags(highlight({"A": (0.5, 2.0), "B": (0.1, 1.2)})) == {"A": "", "B": ""}
    # a tie at the top: both blue
    assert flags(highlight({"A": (0.5, 0.5), "B": (0.5, 0.2)})) == {"A": "blue", "B": "blue"}
    # the 0.05 window, as printed with two decimals: 0.67 is within 0.05 of 0.72, 0.66 is not
    assert flags(highlight({"A": (0.72, 0.5), "B": (0.67, 0.1), "C": (0.66, 0.05)})) == {
        "A": "blue", "B": "blue", "C": "bold"}
    # within the window but not cheaper than the best: bold only
    assert flags(highlight({"A": (0.72, 0.5), "B": (0.70, 0.5)})) == {"A": "blue", "B": "bold"}
    # a missing run is a dash and never wins, even against nobody
    cells = highlight({"A": (None, None), "B": (0.1, 0.5), "C": (float("nan"), 0.1)})
    assert cells["A"].missing and cells["C"].missing and flags(cells)["B"] == "blue"


ROWS = [Section("bullet", None, [
    ("BallRun", "BallRun", highlight({"BC-All": (0.6, 5.08), "BC-Safe": (0.27, 0.46)})),
    ("Average", "Average", highlight({"BC-All": (0.6, 5.08), "BC-Safe": (None, None)}))])]
TABLE = Table("Bullet", ["BC-All", "BC-Safe"], ROWS, ["Data: test."])


def test_markdown_snapshot():
    assert render_markdown(TABLE) == "\n".join([
        "### Bullet", "", "_Data: test._  ", "",
        "| Task | BC-All reward ↑ | BC-All cost ↓ | BC-Safe reward ↑ | BC-Safe cost ↓ |",
        "|---|---:|---:|---:|---:|",
        "| BallRun | 0.60 | 5.08 | **_0.27_** | **_0.46_** |",
        "| Average | 0.60 | 5.08 | – | – |",
        "",
        "Bold: safe (normalized cost < 1). Blue: the safe agent with the highest reward, and "
        "any safe agent within 0.05 of it at lower cost. –: no run. (Markdown shows blue as "
        "bold italic.)"])


def test_html_snapshot():
    out = render_html(TABLE)
    assert ('<tr><td>BallRun</td><td>0.60</td><td>5.08</td><td class="blue"><b style="color:'
            'blue">0.27</b></td><td class="blue"><b style="color:blue">0.46</b></td></tr>') in out
    assert "<tr><td>Average</td><td>0.60</td><td>5.08</td><td>–</td><td>–</td></tr>" in out


def test_latex_marks():
    tex = render_latex(TABLE)
    assert (r"BallRun & 0.60 & 5.08 & \textcolor{blue}{\textbf{0.27}} & "
            r"\textcolor{blue}{\textbf{0.46}} \\") in tex
    assert r"Average & 0.60 & 5.08 & -- & -- \\" in tex
    assert r"\toprule" in tex and "xcolor" in tex


def paper_rows(fmt="json", **kwargs):
    return report(None, fmt, input_csv=PAPER_CSV, **kwargs)


def test_published_numbers_reproduce_the_papers_bold():
    rows = json.loads(paper_rows())
    cell = {(r["suite"], r["task"], r["method"]): r for r in rows}
    # Table 5: CarRun is safe for BC-All; BallRun's only safe agents are FISOR and LSPC
    assert cell["bullet", "CarRun", "BC-All"]["bold"]
    assert [m for (s, t, m), r in cell.items() if s == "bullet" and t == "BallRun" and r["bold"]] \
        == ["FISOR", "LSPC-S", "LSPC-O"]
    assert cell["bullet", "BallRun", "FISOR"]["blue"]  # highest reward among the safe
    # Table 4 prints Walker2dVel LSPC-S in bold with cost 1.28; the rule says cost < 1
    assert cell["safetygym", "Walker2dVelocity", "LSPC-S"]["cost"] == 1.28
    assert not cell["safetygym", "Walker2dVelocity", "LSPC-S"]["bold"]
    # the Average rows are the printed ones (Table 5's LSPC-S reads 0.04), highlighted too
    assert cell["bullet", "Average", "LSPC-S"]["reward"] == 0.04
    assert cell["bullet", "Average", "LSPC-O"]["blue"]
    assert len(rows) == 31 * 10


def test_summary_layout_stacks_the_suites_as_table_1():
    md = paper_rows("markdown", layout="summary",
                    methods=["BC-Safe", "CDT", "CPQ", "FISOR", "LSPC-S", "LSPC-O"])
    order = [md.index(s) for s in ("**MetaDrive:**", "**Safety Gym:**", "**Bullet Safety Gym:**")]
    assert order == sorted(order) and md.count("| Average |") == 3
    assert "BC-All" not in md


def test_averages_are_missing_for_an_incomplete_method():
    long = pd.DataFrame([
        {"suite": "bullet", "task": "BallRun", "method": "A", "reward": 0.2, "cost": 0.1},
        {"suite": "bullet", "task": "CarRun", "method": "A", "reward": 0.4, "cost": 0.3},
        {"suite": "bullet", "task": "BallRun", "method": "B", "reward": 0.9, "cost": 0.5}])
    averages = with_averages(long).query("task == 'Average'").set_index("method")
    assert averages.loc["A", "reward"] == pytest.approx(0.3)
    assert pd.isna(averages.loc["B", "reward"])  # B has no CarRun run: dash, not a mean
    table = build_tables(with_averages(long))[0]
    assert table.sections[0].rows[-1][2]["A"].blue  # B's missing average cannot win


def test_spread_over_seeds():
    frame = pd.DataFrame([{"suite": "bullet", "task": "BallRun", "method": "A", "threshold": t,
                           "seed": s, "normalized_reward": r, "normalized_cost": 0.5}
                          for s, r in ((0, 0.1), (1, 0.3), (2, 0.5)) for t in (10, 20)])
    std = aggregate(frame, "std").iloc[0]
    assert std.reward == pytest.approx(0.3) and std.reward_spread == pytest.approx(0.2)
    ci = aggregate(frame, "ci").iloc[0]
    assert 0.05 < ci.reward_spread < 0.25 and ci.cost_spread == 0.0


def test_report_cli_input_and_bad_input(tmp_path, capsys):
    assert main(["report", "--input", str(PAPER_CSV), "--format", "csv", "--suite",
                 "metadrive"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("suite,task,method,reward,cost") and len(out) == 1 + 10 * 10
    bad = tmp_path / "bad.csv"
    bad.write_text("suite,task,reward\nbullet,BallRun,0.1\n")
    assert main(["report", "--input", str(bad)]) == 2
    assert "missing column(s) cost, method" in capsys.readouterr().err
    assert main(["report", "--results", str(tmp_path / "none")]) == 2
    assert "no records" in capsys.readouterr().err


NO_TEX = shutil.which("pdflatex") is None or shutil.which("pdftoppm") is None


# CI installs texlive and poppler (.ci/run), so there this test always runs
@pytest.mark.skipif(NO_TEX and not os.environ.get("CI"),
                    reason="needs pdflatex and pdftoppm: apt-get install texlive-latex-extra "
                           "poppler-utils")
def test_latex_compiles_and_renders(tmp_path):
    tex = paper_rows("latex", layout="summary")
    document = "\n".join([r"\documentclass{article}", r"\usepackage{booktabs}",
                          r"\usepackage{xcolor}", r"\usepackage{graphicx}",
                          r"\usepackage[margin=1cm]{geometry}",
                          r"\begin{document}", r"\tiny", tex, r"\end{document}"])
    (tmp_path / "table.tex").write_text(document)
    run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "table.tex"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-2000:]
    subprocess.run(["pdftoppm", "-png", "-r", "60", "-f", "1", "-l", "1", "table.pdf", "page"],
                   cwd=tmp_path, check=True, timeout=60)
    page = next(tmp_path.glob("page*.png"))
    assert page.stat().st_size > 5_000


def test_figures_curves_and_dataset(local_ballrun, tmp_path, capsys):
    from helpers import run

    results = tmp_path / "results"
    assert run(results, "--methods", "BC-All,LSPC", "--eval-every", "10",
               "--set", "batch_size=64") == 0
    capsys.readouterr()
    assert main(["plot", "--kind", "curves", "--task", "BallRun", "--results",
                 str(results)]) == 0
    paths = capsys.readouterr().out.split()
    assert [Path(p).suffix for p in paths] == [".png", ".pdf", ".md"]
    table = Path(paths[2]).read_text()  # the curves in numbers, beside the figure
    assert "| BallRun | LSPC-O [batch_size=64] | reward_return | 1 |" in table
    assert "| BallRun | LSPC [batch_size=64] | V^c | 1 |" in table
    from reports.figures import curve_frames

    curves = curve_frames(results, "BallRun")
    tag = " [batch_size=64]"  # the job's variant, as the report tables name it
    assert set(curves) == {"BC-All" + tag, "LSPC-S" + tag, "LSPC-O" + tag}
    assert curves["BC-All" + tag][0].step.tolist() == [10, 20]  # smoke: 20 BC steps, every 10
    assert curves["LSPC-O" + tag][0].step.tolist() == [10]  # smoke: 10 LSPC steps
    from reports.figures import value_frames

    values = value_frames(results, "BallRun")  # LSPC's critics, as logged; BC has none
    assert set(values) == {"LSPC" + tag}
    assert {"value/v", "value/vc"} <= set(values["LSPC" + tag][0])
    # a run folder of no plan or record (an abandoned job: other data, another precision) is
    # left out, never averaged in; the CLI says so
    (run,) = [p for p in (results / "bullet" / "BallRun" / "BC-All").glob("run-seed0-*")
              if p.is_dir()]
    stray = run.with_name("run-seed0-0123456789")
    shutil.copytree(run, stray)
    left_out = []
    assert {k: len(v) for k, v in curve_frames(results, "BallRun", left_out).items()} == {
        "BC-All" + tag: 1, "LSPC-S" + tag: 1, "LSPC-O" + tag: 1}
    assert left_out == [stray / "curve.csv"]
    assert main(["plot", "--kind", "curves", "--task", "BallRun", "--results",
                 str(results)]) == 0
    assert "left out 1 run(s) of no recorded or planned job" in capsys.readouterr().err
    # a job of a saved plan (running: no record yet) is drawn under its own tag
    from reports.figures import job_tags

    tags = job_tags(results, planned={"0123456789": (None, "bf16")})
    assert "BC-All [bf16]" in curve_frames(results, "BallRun", tags=tags)
    # beside fp32 records it says bf16; where every job is bf16 (a study made in bf16) the
    # curves take the paper's names, as the report's columns do
    assert job_tags(results)[run.name.rsplit("-", 1)[-1]] == "batch_size=64"
    assert set(job_tags(results, planned={"0123456789": (None, "bf16")}).values()) == {
        "batch_size=64", "bf16"}
    originals = {path: path.read_text() for path in results.rglob("thr*-seed*.json")}
    for path, text in originals.items():
        path.write_text(json.dumps(json.loads(text) | {"precision": "bf16"}))
    assert set(job_tags(results, planned={"0123456789": (None, "bf16")}).values()) == {
        "batch_size=64", ""}
    for path, text in originals.items():
        path.write_text(text)
    # two jobs under one name (here: a record of the stray run's hash, as after new data) are
    # drawn apart, each labelled with its job, not averaged into one curve
    record = next((results / "bullet" / "BallRun" / "BC-All").glob("thr10-seed0-*.json"))
    other = json.loads(record.read_text()) | {"config_hash": "0123456789"}
    record.with_name("thr10-seed0-0123456789.json").write_text(json.dumps(other))
    job = run.name.rsplit("-", 1)[-1]
    assert set(curve_frames(results, "BallRun")) == {
        f"BC-All{tag} (job {job[:8]})", f"BC-All{tag} (job 01234567)", "LSPC-S" + tag,
        "LSPC-O" + tag}
    shutil.rmtree(stray)
    record.with_name("thr10-seed0-0123456789.json").unlink()
    # several tasks, a row each; a task without curves is named
    assert main(["plot", "--kind", "curves", "--task", "BallRun,BallRun", "--results",
                 str(results), "--out", str(tmp_path / "two")]) == 0
    assert (tmp_path / "two.png").stat().st_size > 20_000
    assert main(["plot", "--kind", "dataset", "--task", "BallRun", "--profile", "smoke",
                 "--out", str(tmp_path / "scatter")]) == 0
    assert (tmp_path / "scatter.png").stat().st_size > 10_000
    assert main(["plot", "--kind", "curves", "--task", "CarRun", "--results",
                 str(results)]) == 2
    assert "--eval-every" in capsys.readouterr().err


def test_flatness_rows_by_hand():
    from reports.figures import flatness_markdown, flatness_rows

    steps = list(range(10, 101, 10))
    # two runs whose mean is the step itself: 50 at half, 80 at four fifths, 100 at the end
    runs = [pd.DataFrame({"step": steps, "reward_return": [x - 5 for x in steps],
                          "cost_return": [3.0] * 10}),
            pd.DataFrame({"step": steps, "reward_return": [x + 5 for x in steps],
                          "cost_return": [5.0] * 10})]
    values = {"LSPC": [pd.DataFrame({"step": [40, 95], "value/v": [1.0, 2.0],
                                     "value/vc": [0.0, 0.0]})]}
    rows = flatness_rows("BallRun", {"LSPC-O": runs}, values)
    by = {(r["curve"], r["statistic"]): r for r in rows}
    reward = by["LSPC-O", "reward_return"]
    assert (reward["at_0.5"], reward["at_0.8"], reward["final"]) == (50, 80, 100)
    assert reward["change_last_fifth"] == pytest.approx(0.2) and reward["runs"] == 2
    assert by["LSPC-O", "cost_return"]["change_last_fifth"] == 0.0
    # logged at 40 and 95 only: at 50% (47.5) and 80% (76) the curve still reads 1.0
    v = by["LSPC", "V"]
    assert (v["at_0.5"], v["at_0.8"], v["final"], v["last_step"]) == (1.0, 1.0, 2.0, 95)
    assert v["change_last_fifth"] == pytest.approx(0.5)
    assert np.isnan(by["LSPC", "V^c"]["change_last_fifth"])  # a final value of 0
    table = flatness_markdown(rows)
    assert "| BallRun | LSPC-O | reward_return | 2 | 50 | 80 | 100 (100) | +20.0% |" in table


def test_compare_with_the_paper_and_tables_per_threshold(local_ballrun, tmp_path, capsys):
    from helpers import run

    results = tmp_path / "results"
    assert run(results, "--methods", "BC-All") == 0
    capsys.readouterr()
    assert main(["report", "--results", str(results), "--compare", "paper", "--format",
                 "json"]) == 0
    rows = {r["task"]: r for r in json.loads(capsys.readouterr().out)}
    ours = json.loads(report(results, "json"))
    mine = next(r for r in ours if r["task"] == "BallRun")
    assert rows["BallRun"]["reward_paper"] == 0.6 and rows["BallRun"]["cost_paper"] == 5.08
    assert rows["BallRun"]["reward_diff"] == pytest.approx(mine["reward"] - 0.6)
    # the Average of one task sits beside the paper's on that task, not its Bullet average
    assert rows["Average"]["reward_paper"] == 0.6 and rows["Average"]["cost_paper"] == 5.08
    # readable: our table, the paper's on the same tasks and methods (each with its bold and
    # blue), then the differences; no other suite's numbers
    assert main(["report", "--results", str(results), "--compare", "paper"]) == 0
    out = capsys.readouterr().out
    assert out.count("### Bullet Safety Gym") == 2 and "MetaDrive" not in out
    theirs = out.split("the LSPC paper's numbers on the same tasks")[1]
    assert "| BallRun | 0.60 | 5.08 |" in theirs and "| Average | 0.60 | 5.08 |" in theirs
    assert "BC-Safe" not in theirs and "### Reproduced minus published" in out
    assert main(["report", "--results", str(results), "--by-threshold"]) == 0
    out = capsys.readouterr().out
    assert [t in out for t in ("threshold 10", "threshold 20", "threshold 40")] == [True] * 3
    assert "Data: locally collected" in out and "Seeds: 0" in out


def test_a_cell_mixing_configs_is_flagged():
    from reports.tables import provenance_notes

    frame = pd.DataFrame([{"suite": "bullet", "task": "BallRun", "method": "A", "threshold": 10,
                           "seed": 0, "profile": "quick", "steps": 5, "data_source": "local",
                           "config_hash": h, "bench_version": "0.1.0", "git_sha": "abc"}
                          for h in ("h1", "h2")])
    assert provenance_notes(frame)[0].startswith("Warning: 1 cell(s) average records")
    assert not provenance_notes(frame.iloc[:1])[0].startswith("Warning")
    per_threshold = frame.assign(threshold=[10, 20])  # BC-Safe: one config per threshold
    assert not provenance_notes(per_threshold)[0].startswith("Warning")


def test_the_seed_note_names_methods_with_fewer_seeds():
    import pandas as pd

    from reports.tables import seed_note

    frame = pd.DataFrame({"method": ["LSPC-S"] * 3 + ["CPQ", "CPQ", "CDT"],
                          "seed": [0, 1, 2, 0, 0, 1]})
    assert seed_note(frame) == "0, 1, 2 (only CPQ: 0; CDT: 1)"
    assert seed_note(frame[frame.method == "LSPC-S"]) == "0, 1, 2"
    # a run still going: BEAR-Lag has seed 1 at one of its two (task, threshold) pairs only
    cells = pd.DataFrame({"method": ["A"] * 4 + ["BEAR-Lag"] * 3, "task": ["T"] * 7,
                          "threshold": [10, 10, 20, 20, 10, 10, 20],
                          "seed": [0, 1, 0, 1, 0, 1, 0]})
    assert seed_note(cells) == "0, 1 (only BEAR-Lag: 0, plus 1 in 1 of 2 (task, threshold) pairs)"


def test_the_harness_note_lists_few_commits_and_counts_many():
    from reports.tables import harness_note

    few = pd.DataFrame({"bench_version": ["0.1.0"] * 2, "git_sha": ["a" * 40, "b" * 40],
                        "created": ["2026-01-01", "2026-01-02"]})
    assert harness_note(few) == "0.1.0 (aaaaaaaa, bbbbbbbb)"
    many = pd.DataFrame({"bench_version": ["0.1.0"] * 5 + ["0.2.0"],
                         "git_sha": [c * 40 for c in "cdefgh"],
                         "created": ["2026-01-03", "2026-01-09", "2026-01-01", "2026-01-02",
                                     "2026-01-04", "2026-01-05"]})
    assert harness_note(many) == ("0.1.0 (5 commits, the newest record from dddddddd), "
                                  "0.2.0 (hhhhhhhh)")


def test_a_sweep_plots_both_policies_and_keeps_the_two_fig4_sweeps_apart(tmp_path, monkeypatch):
    """Fig. 4 moves both restrictions (epsilon with safe_epsilon=None); epsilon alone moves
    LSPC-O's only. Records of both sweeps in one folder give separate lines, and a sweep of
    safe_epsilon is not one of epsilon."""
    import reports.figures
    from bench.records import SCHEMA
    from reports.sweep import sweep_frame

    variants = {"epsilon=0.1": (0.1, 0.25), "epsilon=0.5": (0.5, 0.25),
                "epsilon=0.1, safe_epsilon=None": (0.1, None),
                "epsilon=0.5, safe_epsilon=None": (0.5, None),
                "safe_epsilon=0.75": (0.25, 0.75)}
    for i, (variant, (eps, safe_eps)) in enumerate(variants.items()):
        for j, method in enumerate(("LSPC-S", "LSPC-O")):
            path = tmp_path / f"run{i}" / method / "thr10-seed0-abc.json"
            path.parent.mkdir(parents=True)
            path.write_text(json.dumps({
                "schema": SCHEMA, "status": "ok", "task": "easysparse", "suite": "metadrive",
                "seed": 0, "threshold": 10.0, "method": method,
                "variant": variant, "config": {"epsilon": eps, "safe_epsilon": safe_eps},
                "normalized_reward": eps + j, "normalized_cost": 0.5}))
    frame = sweep_frame(tmp_path, "epsilon")
    assert len(frame) == 8  # 2 policies x 2 sweeps x 2 values; the safe_epsilon sweep is not one
    assert set(frame["with"]) == {"", "safe_epsilon=None"}
    assert set(frame["method"]) == {"LSPC-S", "LSPC-O"}
    assert (frame["n"] == 1).all()

    # a bf16 run of the same sweep point is its own line, never averaged into the fp32 one
    bf16 = tmp_path / "bf16" / "LSPC-O" / "thr10-seed0-def.json"
    bf16.parent.mkdir(parents=True)
    bf16.write_text(json.dumps({
        "schema": SCHEMA, "status": "ok", "task": "easysparse", "suite": "metadrive",
        "seed": 0, "threshold": 10.0, "method": "LSPC-O", "precision": "bf16",
        "variant": "epsilon=0.1", "config": {"epsilon": 0.1, "safe_epsilon": 0.25},
        "normalized_reward": 9.0, "normalized_cost": 0.5}))
    tagged = sweep_frame(tmp_path, "epsilon")
    assert set(tagged["method"]) == {"LSPC-S", "LSPC-O", "LSPC-O [bf16]"}
    assert tagged[tagged.method == "LSPC-O [bf16]"].reward.tolist() == [9.0]
    assert len(tagged) == 9
    plain = tagged[(tagged.method == "LSPC-O") & (tagged["with"] == "") & (tagged.epsilon == 0.1)]
    assert plain.reward.tolist() == [pytest.approx(1.1)] and plain.n.tolist() == [1]
    bf16.unlink()

    figures = []
    monkeypatch.setattr(reports.figures, "_save",
                        lambda fig, path: figures.append(fig) or [path.with_suffix(".png")])
    assert main(["plot", "--kind", "sweep", "--field", "epsilon", "--results",
                 str(tmp_path)]) == 0
    labels = figures[0].axes[0].get_legend_handles_labels()[1]
    assert sorted(labels) == ["LSPC-O", "LSPC-O [safe_epsilon=None]", "LSPC-S",
                              "LSPC-S [safe_epsilon=None]"]

    from reports.sweep import variant_settings

    assert variant_settings("epsilon=0.1, hidden=64,64, safe_epsilon=None") == {
        "epsilon": "0.1", "hidden": "64,64", "safe_epsilon": "None"}


def test_the_papers_average_is_over_the_same_tasks_as_ours():
    from reports.aggregate import read_published
    from reports.tables import PAPER_CSV, same_tasks

    paper = read_published(PAPER_CSV)
    bullet = paper[paper.suite == "bullet"]
    average = bullet[(bullet.task == "Average") & (bullet.method == "LSPC-O")].reward.item()
    two = bullet[bullet.task.isin(["BallRun", "CarRun"])]
    mean = two[two.method == "LSPC-O"].reward.mean()
    assert mean != pytest.approx(average)  # the paper's Bullet average is another number
    # ours on two tasks: the paper's Average becomes its mean over those two
    narrowed = same_tasks(bullet, two)
    row = narrowed[(narrowed.task == "Average") & (narrowed.method == "LSPC-O")]
    assert row.reward.item() == pytest.approx(mean)
    assert set(narrowed.task) == {"BallRun", "CarRun", "Average"}
    # ours on every task of the suite: the paper's own Average row stays
    kept = same_tasks(bullet, bullet[bullet.task != "Average"])
    assert kept.reset_index(drop=True).equals(bullet.reset_index(drop=True))
