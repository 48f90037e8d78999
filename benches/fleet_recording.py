#!/usr/bin/env python3
"""Writes a healthy many-series NDJSON recording for `graywatch replay` and memory benchmarks.

usage: benches/fleet_recording.py [--dependencies 100] [--instances 30] [--zones 3]
                                  [--rate 1000] [--minutes 65] [--seed 1]
                                  [--diurnal SWING] [--bursty] [--retry-every SECONDS]
                                  > fleet.ndjson

A fleet of DEPENDENCIES dependencies, each called on INSTANCES instances of its own spread over
ZONES zones (az-0, az-1, ...): DEPENDENCIES x (1 + INSTANCES + ZONES) series, so the default
100 x 30 x 3 is 3,400.
RATE is calls per second over the whole fleet, spread evenly over dependencies and instances,
for MINUTES minutes of event time. Latencies are log-normal with a median between 5 and 80 ms
that differs by dependency; 0.3% of calls fail. Timestamps advance evenly, in order.

Healthy but less tidy traffic, with any of the options below (without them the output is
the even stream above, byte for byte):
- --diurnal SWING: the fleet's rate follows a 24-hour cycle between RATE * 2/(SWING+1) and
  RATE * 2*SWING/(SWING+1) (SWING times more at the peak than at the trough; mean RATE),
  starting at the trough.
- --bursty: each dependency alternates, on its own phase, between runs of busy seconds (2.5x
  its share, runs of 10 s on average) and quiet ones (0.25x, 20 s on average): mean unchanged.
- --retry-every SECONDS: over-dispersed errors. About every SECONDS per dependency (exponential
  gaps) one request fails and is retried 5-6 times with 100 ms exponential backoff (50%
  jitter), each retry on a random instance and failing too: 6-7 errors within ~3-9 s.
With any of them, calls arrive as a Poisson process per dependency and second (at random
offsets within the second) instead of evenly.

The same arguments and seed always give the same bytes.
"""
import heapq
import math
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
    p.add_argument("--diurnal", type=float, default=None, metavar="SWING",
                   help="peak-to-trough ratio of a 24 h cycle of the rate")
    p.add_argument("--bursty", action="store_true",
                   help="busy and quiet runs of seconds per dependency")
    p.add_argument("--retry-every", type=float, default=None, metavar="SECONDS",
                   help="mean gap between retried failures, per dependency")
    a = p.parse_args()
    if a.diurnal is not None and a.diurnal < 1:
        p.error("--diurnal must be at least 1")
    if a.retry_every is not None and a.retry_every <= 0:
        p.error("--retry-every must be positive")
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
    if a.diurnal is not None or a.bursty or a.retry_every is not None:
        untidy(a, deps, mu, labels)
        return
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


def poisson(rng, lam):
    """A Poisson draw: Knuth's product method for small means, a rounded normal above 50."""
    if lam <= 0:
        return 0
    if lam > 50:
        return max(0, int(round(rng.gauss(lam, math.sqrt(lam)))))
    limit, k, prod = math.exp(-lam), 0, rng.random()
    while prod > limit:
        k += 1
        prod *= rng.random()
    return k


def untidy(a, deps, mu, labels):
    """The stream with diurnal, bursty and retried-failure options (see the module doc)."""
    rng = random.Random(a.seed * 7919 + 1)
    ndeps, ninst = a.dependencies, a.instances
    share = a.rate / ndeps
    amp = 0.0 if a.diurnal is None else (a.diurnal - 1) / (a.diurnal + 1)
    # Bursty: per dependency, whether it is in a busy run and the second the run ends.
    busy = [rng.random() < 1 / 3 for _ in deps]
    run_end = [0] * ndeps
    next_retry = [
        rng.expovariate(1 / a.retry_every) * 1000 if a.retry_every else math.inf for _ in deps
    ]
    pending = []  # (ms from start, dependency, instance) of retries still to come
    out = sys.stdout
    buf = []
    seconds = int(a.minutes * 60)
    for t in range(seconds):
        diurnal = 1 - amp * math.cos(2 * math.pi * t / 86_400)
        calls = []
        for d in range(ndeps):
            factor = diurnal
            if a.bursty:
                if t >= run_end[d]:
                    busy[d] = not busy[d]
                    mean = 10 if busy[d] else 20
                    run_end[d] = t + 1 + int(rng.expovariate(1 / mean))
                factor *= 2.5 if busy[d] else 0.25
            for _ in range(poisson(rng, share * factor)):
                ms = t * 1000 + rng.random() * 1000
                err = rng.random() < 0.003
                calls.append((ms, d, rng.randrange(ninst), err))
            while next_retry[d] < (t + 1) * 1000:
                at = next_retry[d]
                for i in range(rng.randint(5, 6) + 1):
                    heapq.heappush(pending, (at, d, rng.randrange(ninst)))
                    at += 100 * 2**i * rng.uniform(1.0, 1.5)
                next_retry[d] += rng.expovariate(1 / a.retry_every) * 1000
        while pending and pending[0][0] < (t + 1) * 1000:
            ms, d, i = heapq.heappop(pending)
            calls.append((ms, d, i, True))
        calls.sort()
        for ms, d, i, err in calls:
            buf.append(
                f'{{"dependency":"{deps[d]}","duration_ms":{rng.lognormvariate(mu[d], 0.4):.3f},'
                f'"outcome":"{"error" if err else "ok"}","ts":{a.start_ms + int(ms)},'
                f"{labels[d][i]}}}\n"
            )
        if len(buf) >= 4096:
            out.write("".join(buf))
            buf.clear()
    out.write("".join(buf))


if __name__ == "__main__":
    main()
