#!/usr/bin/env python3
"""Writes a healthy many-series NDJSON recording for `graywatch replay` and memory benchmarks.

usage: benches/fleet_recording.py [--dependencies 100] [--instances 30] [--zones 3]
                                  [--rate 1000] [--minutes 65] [--seed 1] > fleet.ndjson

A fleet of DEPENDENCIES dependencies, each called on INSTANCES instances of its own spread over
ZONES zones (az-0, az-1, ...): DEPENDENCIES x (1 + INSTANCES + ZONES) series, so the default
100 x 30 x 3 is 3,400.
RATE is calls per second over the whole fleet, spread evenly over dependencies and instances,
for MINUTES minutes of event time. Latencies are log-normal with a median between 5 and 80 ms
that differs by dependency; 0.3% of calls fail. Timestamps advance evenly, in order.

The same arguments and seed always give the same bytes.
"""
import argparse
import random
import sys


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dependencies", type=int, default=100)
    p.add_argument("--instances", type=int, default=30)
    p.add_argument("--zones", type=int, default=3)
    p.add_argument("--rate", type=float, default=1000.0, help="calls per second, whole fleet")
    p.add_argument("--minutes", type=float, default=65.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--start-ms", type=int, default=1_800_000_000_000)
    a = p.parse_args()
    if min(a.dependencies, a.instances, a.zones) < 1 or a.rate <= 0 or a.minutes <= 0:
        p.error("counts, rate and minutes must be positive")

    rng = random.Random(a.seed)
    deps = [f"dep-{d:04}.internal" for d in range(a.dependencies)]
    # Per dependency: log-normal location (ln of the median in ms).
    mu = [rng.uniform(1.6, 4.4) for _ in deps]
    # The label part of each (dependency, instance) line, built once.
    labels = [
        [
            f'"instance":"10.{d // 250}.{d % 250}.{i}","zone":"az-{i % a.zones}"'
            for i in range(a.instances)
        ]
        for d in range(a.dependencies)
    ]
    total = int(a.rate * 60 * a.minutes)
    step = 1000.0 / a.rate
    out = sys.stdout
    buf = []
    lognorm = rng.lognormvariate
    rnd = rng.random
    ndeps, ninst = a.dependencies, a.instances
    for n in range(total):
        d = n % ndeps
        i = (n // ndeps) % ninst
        outcome = "error" if rnd() < 0.003 else "ok"
        buf.append(
            f'{{"dependency":"{deps[d]}","duration_ms":{lognorm(mu[d], 0.4):.3f},'
            f'"outcome":"{outcome}","ts":{a.start_ms + int(n * step)},{labels[d][i]}}}\n'
        )
        if len(buf) >= 4096:
            out.write("".join(buf))
            buf.clear()
    out.write("".join(buf))


if __name__ == "__main__":
    main()
