"""The benchmark harness's pure parts: target checks, quantiles, py-spy summaries."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from bench._runs import turn_order
from bench.ab import Variant, positive_int
from bench.failover import ten_against_one
from bench.profile import summarise
from bench.run import check_targets, markdown
from bench.scenarios import quantile
from bench.threads import dumped_names as python_names_from
from bench.threads import table as threads_table


def test_targets_compare_in_the_stated_direction() -> None:
    results = {
        "backfill": {"efficiency": 0.9, "rate_limited_fraction": 0.02},
        "latency": {"p99_s": 1.5},
    }
    verdicts = {t["figure"]: t["met"] for t in check_targets(results)}
    assert verdicts == {"efficiency": True, "rate_limited_fraction": False, "p99_s": True}


def test_quantile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert quantile(values, 0.5) == 51.0
    assert quantile(values, 0.99) == 100.0


def test_summarise_counts_own_and_inclusive_samples(tmp_path: Path) -> None:
    raw = tmp_path / "raw.txt"
    raw.write_text("process 1;thread 2;main (a.py:1);work (a.py:5) 3\nmain (a.py:1) 1\n")
    text = summarise(raw, 5)
    assert "4 samples" in text
    assert " 75.0%  work (a.py:5)" in text
    assert "100.0%  main (a.py:1)" in text


def test_the_cpu_table_puts_a_baseline_beside_the_bridge() -> None:
    per_cpu = {"bridge": 12_000, "baseline": 8_000, "naive": 5_000, "floor": 30_000}
    per_cpu |= {"floor_paced": 20_000, "floor_contract": 18_000}
    results = {
        "mode": "quick",
        "duration_s": 60.0,
        "bridge_log_level": "WARNING",
        "targets": [],
        "cpu": {
            "scans": 30_000,
            "repetitions": 3,
            "scans_per_cpu_second": per_cpu,
            "fixed_cpu_s": dict.fromkeys(per_cpu, 0.5),
            "scans_per_cpu_second_net_of_startup": per_cpu,
            "ratio_vs_naive": 2.4,
            "ratio_vs_floor": 0.4,
            "ratio_vs_paced_floor": 0.6,
            "ratio_vs_contract_floor": 0.67,
            "many_passes": {
                "passes": 30_000,
                "scans_per_cpu_second": {"bridge": 9_000, "baseline": 4_000},
                "ratio_vs_default_backlog": {"bridge": 0.75, "baseline": 0.5},
            },
            "baseline": {
                "checkout": "/work/base",
                "ratio_vs_naive": 1.6,
                "ratio_vs_floor": 0.27,
                "bridge_vs_baseline": 1.5,
            },
        },
    }
    memory = {"scans": 200_000, "early_scans": 20_000, "rss_early_mb": 100.0}
    memory |= {"rss_end_mb": 104.0, "rss_peak_mb": 105.0, "rss_growth_mb": 4.0}
    results["memory"] = memory | {"baseline": memory | {"rss_growth_mb": 6.5}}
    text = markdown(results)
    assert "Memory (bridge): RSS 100.0 MiB" in text
    assert "growth 6.5 MiB" in text
    assert "| baseline | 8,000 | 0.5 | 8,000 |" in text
    assert "| floor_paced | 20,000 | 0.5 | 20,000 |" in text
    assert "| floor_contract | 18,000 | 0.5 | 18,000 |" in text
    assert "paced as the bridge is 0.6, against the contract's floor 0.67" in text
    assert "With 30,000 passes in the backlog (not a target): bridge 9,000" in text
    assert "baseline 4,000 scans / CPU s (0.5 of its rate on the default backlog)" in text
    assert "baseline (/work/base): ratio_vs_naive 1.6, ratio_vs_floor 0.27" in text
    assert "bridge / baseline 1.5" in text


def test_the_thread_table_groups_pools_and_sources_by_their_python_names() -> None:
    threads = {
        100: ("passentry-bridg", 0.20, 0.02),
        101: ("passentry-bridg", 0.30, 0.01),
        102: ("passentry-bridg", 0.25, 0.03),
        103: ("passentry-bridg", 0.60, 0.04),
        104: ("rdk:broker1", 0.07, 0.03),
    }
    names = python_names_from(
        'Thread 100 (idle): "MainThread"\nThread 101 (active): "fetch_0"\n'
        'Thread 102 (idle): "fetch_3"\nThread 103 (active): "source-eu-events"\n'
    )
    assert names == {100: "MainThread", 101: "fetch_0", 102: "fetch_3", 103: "source-eu-events"}
    rows = threads_table(threads, names, scans=10_000).splitlines()
    # Busiest first; the two fetchers are one row (0.59 s), librdkafka's thread keeps its name.
    assert rows[2] == "| source-<id> | 1 | 0.60 | 0.04 | 64.0 | 41% |"
    assert rows[3] == "| fetch_N | 2 | 0.55 | 0.04 | 59.0 | 38% |"
    assert rows[4] == "| MainThread | 1 | 0.20 | 0.02 | 22.0 | 14% |"
    assert rows[-1] == "| **all** | | | | **155.0** | |"


def test_the_thread_table_counts_what_ended_threads_spent() -> None:
    threads = {100: ("passentry-bridg", 0.50, 0.10), 101: ("rdk:main", 0.10, 0.05)}
    rows = threads_table(threads, {100: "MainThread"}, scans=10_000, process=(0.70, 0.20))
    assert "| (threads that had ended) |  | 0.10 | 0.05 | 15.0 | 17% |" in rows
    assert rows.splitlines()[-1] == "| **all** | | | | **90.0** | |"


def test_ab_takes_a_positive_count_of_passes() -> None:
    assert positive_int("100000") == 100_000
    for text in ("0", "-5"):
        with pytest.raises(argparse.ArgumentTypeError, match="must be 1 or more"):
            positive_int(text)


def test_many_sources_compares_the_medians_and_shows_every_run() -> None:
    figures = ten_against_one({"one": [1.0, 1.6, 1.2], "ten": [2.0, 1.5, 1.4]}, 30_000, 10)
    assert figures["one"]["cpu_s"] == 1.2
    assert figures["ten"]["cpu_s"] == 1.5
    assert figures["ratio_ten_vs_one"] == round(20_000 / 25_000, 3)
    assert figures["ratio_ten_vs_one_runs"] == [0.5, 1.067, 0.857]
    head = {"mode": "quick", "duration_s": 60.0, "bridge_log_level": "WARNING", "targets": []}
    text = markdown({**head, "many_sources": {**figures, "baseline": figures}})
    assert text.count("medians of 3 interleaved runs") == 2
    assert "ten [2.0, 1.5, 1.4]" in text


def test_ab_repetitions_take_turns_at_running_first() -> None:
    variants = [Variant(name, {}) for name in ("base", "head", "c1")]
    orders = [[v.name for v in turn_order(variants, rep)] for rep in range(4)]
    assert orders == [
        ["base", "head", "c1"],
        ["head", "c1", "base"],
        ["c1", "base", "head"],
        ["base", "head", "c1"],
    ]
