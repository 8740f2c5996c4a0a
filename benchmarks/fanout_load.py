"""The load clients of ``benchmarks/fanout.py``: ``sse_load.js`` (Node.js)
processes, each with a slice of the streams (one process holds at most the
open-files limit of connections), and their figures merged."""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    import select

    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        raise SystemExit("the load client did not answer in time")
    return proc.stdout.readline().strip()


def start_clients(
    port: int, paths: list[str], clients: int, events: int, mode: str, streams: int,
    deadline_ms: int, system: str, heartbeats: bool,
) -> list[tuple[subprocess.Popen[str], Path]]:  # fmt: skip
    """Start ``clients`` load clients, each with a slice of ``paths`` (one
    process holds at most the open-files limit of connections)."""
    started = []
    size = -(-len(paths) // clients)
    for first in range(0, len(paths), size):
        users = range(first, min(first + size, len(paths)))
        if mode == "targeted":  # event seq goes to user seq % streams
            expected = sum(1 for seq in range(events) if seq % streams in users)
        else:
            expected = events * len(users)
        config = {
            "port": port,
            "paths": paths[users.start : users.stop],
            "events": events,
            "mode": mode,
            "expected": expected,
            "deadline_ms": deadline_ms,
            "no_head": system == "flask_sse",
            "heartbeats": heartbeats,
        }
        config_file = Path(tempfile.mkstemp(prefix="sse-load-", suffix=".json")[1])
        config_file.write_text(json.dumps(config))
        client = subprocess.Popen(
            ["node", str(HERE / "sse_load.js"), str(config_file)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        started.append((client, config_file))
    return started


def merge_stats(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One figure for several load clients: counts added, delay histograms merged."""
    merged: dict[str, Any] = {
        key: sum(p[key] for p in parts) for key in ("expected", "received", "duplicates")
    }
    histogram: dict[int, int] = {}
    for part in parts:
        for bucket, count in part["hist"]:
            histogram[bucket] = histogram.get(bucket, 0) + count
    total = sum(histogram.values())

    def percentile(p: float) -> float | None:
        if not total:
            return None
        rank, seen = min(total - 1, int(total * p / 100)), 0
        for bucket in sorted(histogram):
            seen += histogram[bucket]
            if seen > rank:
                return bucket / 10_000
        return None

    merged.update(p50=percentile(50), p99=percentile(99))
    maxima = [p["max"] for p in parts if p["max"] is not None]
    merged["max"] = max(maxima) if maxima else None
    beats = [p["heartbeats"] for p in parts if p.get("heartbeats")]
    if beats:
        merged["heartbeats"] = {
            "streams_with_two": sum(b["streams_with_two"] for b in beats),
            "gap_max": max(b["gap_max"] for b in beats),
            "gap_p99": max(b["gap_p99"] or 0 for b in beats),
            "fewest": min(b["fewest"] for b in beats),
        }
    return merged
