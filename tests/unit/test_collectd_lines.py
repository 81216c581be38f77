"""`nat-keepalive collectd`'s PUTVAL lines from a status file's data."""

from __future__ import annotations

import calendar
import time

from natkeepalive.cli.collectd import putval_lines


def test_values_and_unknowns() -> None:
    answered = "2026-11-27T05:10:00Z"
    now = calendar.timegm(time.strptime(answered, "%Y-%m-%dT%H:%M:%SZ")) + 4.5
    data = {
        "bindings": [
            {
                "name": "pro/vider x",
                "state": "lagged",
                "rtt_ms": 2500.0,
                "interval_s": 25,
                "probes_sent": 7,
                "responses": 6,
                "timeouts": 1,
                "dropped": 0,
                "changes": 0,
                "expiries": 2,
                "lifetime_s": 61.5,
                "last_response_at": answered,
            },
            {"name": "new", "state": "unknown", "rtt_ms": None, "probes_sent": True},
            "not a binding",
            {"state": "no name"},
        ]
    }
    lines = list(putval_lines(data, "router/1", 10.0, now))
    first = 'PUTVAL "router_1/nat_keepalive-pro_vider_x/'
    assert lines[:11] == [
        f'{first}bool-reachable" interval=10 N:1',
        f'{first}latency-rtt" interval=10 N:2.5',
        f'{first}derive-probes_sent" interval=10 N:7',
        f'{first}derive-answers" interval=10 N:6',
        f'{first}derive-timeouts" interval=10 N:1',
        f'{first}derive-dropped" interval=10 N:0',
        f'{first}derive-changes" interval=10 N:0',
        f'{first}derive-expiries" interval=10 N:2',
        f'{first}duration-interval" interval=10 N:25',
        f'{first}duration-lifetime" interval=10 N:61.5',
        f'{first}duration-since_answer" interval=10 N:4.5',
    ]
    second = [line.rsplit(" ", 1)[1] for line in lines[11:]]
    assert second == ["N:0", "N:U", "N:U", "N:U", "N:U", "N:U", "N:U", "N:U", "N:U", "N:U", "N:U"]
    assert list(putval_lines({"bindings": None}, "h", 1.0, now)) == []
