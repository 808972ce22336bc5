"""mbtrain.bench.steal: the hypervisor's share of the CPU time, read from /proc/stat (fake files here)."""
from __future__ import annotations

import math

import pytest

from mbtrain.bench import steal
from mbtrain.bench.steal import Steal, StealMeter, cpu_times, steal_between, steal_warning


def write_stat(path, user=100, nice=0, system=20, idle=1000, iowait=5, irq=1, softirq=2, steal_ticks=0, tail=True):
    fields = [user, nice, system, idle, iowait, irq, softirq, steal_ticks] + ([0, 0] if tail else [])
    path.write_text("cpu  " + " ".join(map(str, fields)) + "\ncpu0 1 2 3 4 5 6 7 8 0 0\nintr 12345\n")


def test_the_aggregate_cpu_line_is_read_field_by_field(tmp_path):
    stat = tmp_path / "stat"
    write_stat(stat, user=7, system=3, idle=50, steal_ticks=11)
    assert cpu_times(stat) == dict(user=7, nice=0, system=3, idle=50, iowait=5, irq=1, softirq=2, steal=11)


def test_an_old_kernel_without_a_steal_column_reads_as_none_stolen(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text("cpu 10 0 5 100 1 0 0\n")
    assert cpu_times(stat)["steal"] == 0


@pytest.mark.parametrize("content", [None, "", "intr 1 2 3\n", "cpu ten eleven\n"])
def test_no_readable_cpu_line_is_none(tmp_path, content):
    stat = tmp_path / "stat"
    if content is not None:
        stat.write_text(content)
    assert cpu_times(stat) is None


def test_the_share_is_of_the_cpu_time_wanted_not_of_the_wall_time():
    before = dict(user=100, nice=0, system=20, idle=1000, iowait=5, irq=1, softirq=2, steal=10)
    after = dict(before, user=160, system=30, idle=5000, iowait=50, irq=2, softirq=2, steal=30)
    measured = steal_between(before, after)
    assert measured == Steal(stolen=20, busy=60 + 10 + 1)  # idle and iowait are not busy
    assert measured.share == pytest.approx(20 / 91)
    assert steal_between(None, after) is None and steal_between(before, None) is None
    assert math.isnan(Steal(stolen=0, busy=0).share)


def test_the_meter_reads_the_file_before_and_after_its_block(tmp_path):
    stat = tmp_path / "stat"
    write_stat(stat, user=100, steal_ticks=0)
    meter = StealMeter(stat)
    assert math.isnan(meter.share)  # not measured yet
    with meter:
        write_stat(stat, user=130, steal_ticks=10)
    assert meter.steal == Steal(stolen=10, busy=30)
    assert meter.share == pytest.approx(0.25)


def test_without_proc_stat_the_share_is_not_measured(tmp_path):
    with StealMeter(tmp_path / "missing") as meter:
        pass
    assert meter.steal is None and math.isnan(meter.share)


def test_this_machine_gives_a_share_between_0_and_1_or_says_it_cannot():
    with StealMeter() as meter:
        sum(i * i for i in range(200_000))
    assert math.isnan(meter.share) or 0 <= meter.share <= 1
    if cpu_times() is not None:
        assert meter.steal is not None and meter.steal.busy >= 0


def test_the_warning_names_the_highest_and_median_share_over_the_threshold():
    assert steal_warning([0.01, steal.STEAL_WARNING]) is None  # at the threshold: no warning
    assert steal_warning([math.nan, math.nan]) is None and steal_warning([]) is None
    text = steal_warning([0.02, 0.14, math.nan, 0.06], " during the timings")
    assert "up to 14%" in text and "median 6%" in text and "during the timings" in text


def test_a_run_records_its_steal_in_machine_json_and_the_report_shows_it(tmp_path, monkeypatch):
    """finish_run: the steal since machine_info's reading at the start; the report's machine section says it."""
    import json

    import pandas as pd

    from mbtrain.bench import machine, throughput
    from mbtrain.bench.markdown import header_lines

    stat = tmp_path / "stat"
    write_stat(stat, user=100, steal_ticks=0)
    monkeypatch.setattr(machine, "cpu_times", lambda: cpu_times(stat))
    monkeypatch.setattr(throughput, "cpu_times", lambda: cpu_times(stat))
    info = machine.machine_info(command="test")
    assert info["cpu_times_at_start"]["user"] == 100
    write_stat(stat, user=180, steal_ticks=20)  # the run: 80 ticks busy, 20 stolen
    monkeypatch.setattr(throughput, "read_results", lambda out: None)
    throughput.finish_run(tmp_path, info, interrupted=False, write_report=False)
    recorded = json.loads((tmp_path / "machine.json").read_text())
    assert recorded["steal_share"] == pytest.approx(0.2)

    def section(info):
        return "\n".join(header_lines(pd.DataFrame({"kind": ["floor"], "dataset": ["digits"]}), info,
                                      pd.DataFrame(columns=["executor", "jobs", "workers"]), [], False))
    text = section(recorded)
    assert "hypervisor steal during the run (`/proc/stat`): 20.0% of the CPU time used" in text
    assert "Warning: The hypervisor took up to 20% of the CPU time during this run" in text
    quiet = section(dict(recorded, steal_share=0.01))
    assert "1.0% of the CPU time used" in quiet and "Warning: The hypervisor" not in quiet
    assert "hypervisor steal" not in section(dict(recorded, steal_share=None))  # not measured: not shown


def test_two_runs_compared_show_their_steal_and_differ_beyond_five_points():
    from mbtrain.bench.comparison import machine_differences

    def steal_row(a, b):
        rows = machine_differences({"steal_share": a}, {"steal_share": b}).set_index("what")
        return rows.loc["hypervisor steal"] if "hypervisor steal" in rows.index else None

    row = steal_row(0.02, 0.14)
    assert row["this run"] == "2.0%" and row["other run"] == "14.0%" and row["differs"]
    assert not steal_row(0.02, 0.06)["differs"]
    assert not steal_row(0.02, None)["differs"]  # unknown on one side: not called different
    assert steal_row(None, None) is None  # neither recorded it (older runs): left out
