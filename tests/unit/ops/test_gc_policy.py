"""The collector's set-up for streaming: start-up frozen, thresholds left alone."""

from __future__ import annotations

import gc

from bridge.ops.gc_policy import tune_for_streaming


def test_start_up_is_frozen_and_the_thresholds_stay_the_defaults() -> None:
    thresholds = gc.get_threshold()
    before = gc.get_freeze_count()
    try:
        tune_for_streaming()
        assert gc.get_freeze_count() > before
        assert gc.get_threshold() == thresholds
    finally:
        gc.unfreeze()
