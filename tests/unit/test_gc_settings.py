"""The service calms the cyclic garbage collector before it serves (see app.serve)."""

from __future__ import annotations

import gc

from callgate.app import GC_YOUNG_THRESHOLD, calm_garbage_collector


def test_startup_objects_frozen_and_young_collections_rarer() -> None:
    before = gc.get_threshold()
    try:
        calm_garbage_collector()
        assert gc.get_freeze_count() > 10_000  # the loaded libraries' objects: never walked
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, 20, 20)
        assert before[0] < GC_YOUNG_THRESHOLD
    finally:  # the test process goes on with Python's defaults
        gc.unfreeze()
        gc.set_threshold(*before)
