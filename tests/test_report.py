"""Reports: Markdown tables, rebuilt from the CSV alone, comparisons, and the CLI commands."""
import json
import math

import pandas as pd
import pytest

from mbtrain.bench.report import fmt, markdown_table, mean_sd, write_report
from mbtrain.cli import main

SWEEP_PLOTS = ("sweep_epochs_to_target.png", "sweep_steps_to_target.png", "sweep_seconds_to_target.png",
               "sweep_learning_curves.png", "sweep_noise_scale.png")
BENCH_PLOTS = ("bench_throughput.png", "bench_speedup.png")


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    assert main(["bench", "--dataset", "synthetic", "--sizes", "64,8,10", "--arms", "loop,numpy,numba",
                 "--dtype", "float32", "--batch-sizes", "1,100", "--repeats", "2", "--quick", "--no-progress",
                 "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    assert main(["sweep", "--dataset", "synthetic", "--sizes", "64,8,10", "--batch-sizes", "5,50,500",
                 "--seeds", "2", "--max-epochs", "4", "--target", "0.6", "--no-progress", "--out", str(out)]) == 0
    return out


def table_rows(markdown):
    """The cells of every Markdown table row in ``markdown`` (header and rule lines included)."""
    return [[cell.strip() for cell in line.strip().strip("|").split(" | ")]
            for line in markdown.splitlines() if line.startswith("|")]


def test_markdown_table_formats_and_aligns():
    frame = pd.DataFrame({"arm": ["numba", "a|b"], "examples/s": [1234567.8, 0.000123], "n": [1, 2]})
    text = markdown_table(frame)
    lines = [[cell.strip() for cell in line.split(" | ")] for line in text.splitlines()]
    assert lines[0] == ["| arm", "examples/s", "n |"]
    rule = text.splitlines()[1].strip("|").split("|")  # text left-aligned (":---"), numbers right ("---:")
    assert [(c.startswith(":"), c.endswith(":")) for c in rule] == [(True, False), (False, True), (False, True)]
    assert lines[2] == ["| numba", "1,234,568", "1 |"]
    assert lines[3] == ["| a\\|b", "0.000123", "2 |"]  # a | in a cell is escaped, not a new column
    assert markdown_table(pd.DataFrame()) == "_(no rows)_\n"


def test_number_formatting():
    assert fmt(float("nan")) == "" and fmt(None) == ""
    assert fmt(3.0) == "3" and fmt(0.123456) == "0.123" and fmt(math.inf) == "inf"
    assert mean_sd([1.0, 3.0]) == "2 ± 1.4" and mean_sd([2.0, float("nan")]) == "2" and mean_sd([]) == ""


@pytest.mark.parametrize("which", ["bench", "sweep"])
def test_report_and_every_plot_exist(which, bench_dir, sweep_dir):
    folder = bench_dir if which == "bench" else sweep_dir
    for name in ("results.csv", "machine.json", "report.md") + (BENCH_PLOTS if which == "bench" else SWEEP_PLOTS):
        assert (folder / name).stat().st_size > 0, name


def test_the_report_names_the_data_and_sizes(sweep_dir):
    # the default sizes fitted to the data, and explicit ones refused: tests/test_hardening_bench.py
    text = (sweep_dir / "report.md").read_text()
    assert "sizes=[64, 8, 10]" in text and "data set: **synthetic**" in text
    assert json.loads((sweep_dir / "machine.json").read_text())["settings"]["sizes"] == [64, 8, 10]


def test_sweep_report_states_the_verdict(sweep_dir):
    text = (sweep_dir / "report.md").read_text()
    assert "Fastest to target: batch size" in text
    assert "Largest batch size that still scales" in text
    assert "Masters & Luschi" in text and "Gradient noise scale" in text


@pytest.mark.parametrize("which", ["bench", "sweep"])
def test_report_command_reproduces_the_markdown_from_the_csv(which, bench_dir, sweep_dir, tmp_path, capsys):
    source = bench_dir if which == "bench" else sweep_dir
    copy = tmp_path / which
    copy.mkdir()
    for name in ("results.csv", "machine.json"):  # nothing else: no plots, no report
        (copy / name).write_bytes((source / name).read_bytes())
    assert main(["report", str(copy)]) == 0
    assert (copy / "report.md").read_text() == (source / "report.md").read_text()
    plots = BENCH_PLOTS if which == "bench" else SWEEP_PLOTS
    assert all((copy / name).stat().st_size > 0 for name in plots)


def test_report_works_without_machine_json(sweep_dir, tmp_path):
    (tmp_path / "results.csv").write_bytes((sweep_dir / "results.csv").read_bytes())
    text = write_report(tmp_path).read_text()
    assert "## Time to target accuracy" in text


def _copy(source, folder):
    folder.mkdir()
    for name in ("results.csv", "machine.json"):
        (folder / name).write_bytes((source / name).read_bytes())
    return folder


def test_compare_two_folders(bench_dir, sweep_dir, tmp_path):
    mine = _copy(bench_dir, tmp_path / "new")
    assert main(["report", str(mine), "--compare", str(bench_dir)]) == 0
    text = (mine / "report.md").read_text()
    assert f"## Comparison with `{bench_dir.name}`" in text
    section = text.split("## Comparison with")[1]
    rows = {tuple(r[:3]): r for r in table_rows(section)}
    assert rows[("numba", "float32", "100")][5] == "1"  # the ratio of a copy to its source
    assert rows[("numba", "float32", "100")][6] == "yes"  # and the same spread
    mine = _copy(sweep_dir, tmp_path / "new_sweep")
    assert main(["report", str(mine), "--compare", str(sweep_dir)]) == 0
    assert "seconds ratio" in (mine / "report.md").read_text()


def test_report_of_a_missing_folder_is_an_error(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "no results.csv" in capsys.readouterr().err


def test_bad_options_name_the_option(capsys):
    with pytest.raises(SystemExit):
        main(["sweep", "--target", "1.5"])
    assert "--target" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "--batch-sizes", "10,x"])
    assert "--batch-sizes" in capsys.readouterr().err
