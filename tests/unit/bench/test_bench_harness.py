"""The benchmark harness's pure parts: target checks, quantiles, py-spy summaries."""

from __future__ import annotations

from pathlib import Path

from bench.profile import summarise
from bench.run import check_targets
from bench.scenarios import quantile


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
