#!/usr/bin/env python3
"""Writes a busy, healthy NDJSON recording for `graywatch replay` benchmarks.

usage: benches/replay_stream.py CALLS_PER_S MINUTES [DEPENDENCIES] > stream.ndjson

Each dependency has 10 instances over 3 zones; latencies are log-normal around 20 ms with
0.3% errors, and timestamps advance evenly. Deterministic (fixed seed).
"""
import json
import random
import sys

rate = int(sys.argv[1])
minutes = int(sys.argv[2])
deps = int(sys.argv[3]) if len(sys.argv) > 3 else 8
rng = random.Random(7)
t0 = 1_800_000_000_000
names = [f"dep-{d}.internal" for d in range(deps)]
out = sys.stdout
step = 1000.0 / rate
for n in range(rate * 60 * minutes):
    d = n % deps
    i = rng.randrange(10)
    outcome = "error" if rng.random() < 0.003 else "ok"
    out.write(json.dumps({
        "dependency": names[d],
        "duration_ms": round(rng.lognormvariate(3.0, 0.5), 3),
        "outcome": outcome,
        "ts": t0 + int(n * step),
        "instance": f"10.1.{d}.{i}",
        "zone": f"eu-west-1{'abc'[i % 3]}",
        "source": "checkout",
    }, separators=(",", ":")) + "\n")
