"""How the status page judges a host at a glance (`calls.overview.host_views`), from the
status the breaker, the consoles and the tracker report, and how a failure's reason is
masked."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from callgate.calls.overview import Health, failed_view, host_views
from callgate.db.calls import CallRecord

LAG_LIMIT = 3.0


def judged(
    pbx: dict[str, Any] | None = None,
    polling: dict[str, Any] | None = None,
    configured: dict[str, tuple[str, ...]] | None = None,
) -> dict[str, tuple[Health, tuple[str, ...]]]:
    views = host_views(
        pbx or {}, {"listening": {}}, polling or {}, configured or {}, lag_limit=LAG_LIMIT
    )
    return {view.label: (view.health, view.notes) for view in views}


def test_a_host_never_contacted_is_idle_and_named_by_configuration() -> None:
    views = host_views({}, {}, {}, {"10.0.0.5:5059": ("0367", "0368")}, lag_limit=LAG_LIMIT)
    assert [(v.label, v.health, v.reachable, v.enterprises) for v in views] == [
        ("10.0.0.5:5059", Health.IDLE, None, ("0367", "0368"))
    ]


def test_connection_failures_and_an_open_circuit_are_failing() -> None:
    pbx = {
        "breaker": {
            "hosts": {
                "a:5059": {"state": "closed", "failures": 0, "rejected": 0},
                "b:5059": {"state": "closed", "failures": 1, "last_error": "timed out"},
                "c:5059": {"state": "open", "failures": 3, "retry_in_s": 12.0, "rejected": 4},
            }
        }
    }
    result = judged(pbx)
    assert result == {
        "a:5059": (Health.OK, ()),
        "b:5059": (Health.FAILING, ("1 connection failure(s) in a row",)),
        "c:5059": (Health.FAILING, ("circuit open: calls fail at once",)),
    }
    views = host_views(pbx, {}, {}, {}, lag_limit=LAG_LIMIT)
    assert [view.label for view in views] == ["b:5059", "c:5059", "a:5059"]  # worst first
    assert views[0].last_error == "timed out"
    assert (views[1].retry_in_s, views[1].rejected, views[1].reachable) == (12.0, 4, False)


def test_failing_listings_fail_and_late_ones_or_a_fallback_degrade() -> None:
    pbx = {"consoles": {"hosts": {"d:5059": {"mode": "rx-fallback", "consoles": 0, "idle": 0}}}}
    polling = {
        "e:5059": {"calls": 2, "listed_s": 20.0, "failing_s": 20.0},
        "f:5059": {"calls": 1, "listed_s": 7.0, "failing_s": None},
        "g:5059": {"calls": 1, "listed_s": 0.4, "failing_s": None},
    }
    assert judged(pbx, polling) == {
        "d:5059": (Health.DEGRADED, ("console unavailable: asterisk -rx fallback",)),
        "e:5059": (Health.FAILING, ("listings failing for 20 s",)),
        "f:5059": (Health.DEGRADED, ("listings 7 s old",)),
        "g:5059": (Health.OK, ()),
    }


def test_a_failure_reason_never_shows_the_number() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    fields: dict[str, Any] = dict.fromkeys(CallRecord.__dataclass_fields__)
    fields |= {
        "id": "c1",
        "enterprise_number": "0367",
        "extension": "150",
        "phone": "+375296254070",
        "host": "h",
        "outcome": "failed",
        "state": "failed",
        "created_at": at,
        "error": "Local/375296254070@inoffice-00000001;1 ended before the dialplan ran it",
    }
    failed = failed_view(CallRecord(**fields))
    assert "296254" not in failed.reason + failed.phone
    assert failed.phone == "+375*******70"
