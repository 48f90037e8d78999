#!/usr/bin/env python3
"""Posts live many-series traffic to a running graywatch and reports its memory and tick time.

usage: benches/live_load.py [--url http://127.0.0.1:9797] [--dependencies 1000]
                            [--instances 100] [--zones 3] [--rate 10000] [--seconds 300]
                            [--report-every 10] [--pid PID] [--seed 1]

DEPENDENCIES dependencies, each called on INSTANCES instances of its own spread over ZONES
zones: DEPENDENCIES x (1 + INSTANCES + ZONES) series (the defaults: 1,000 x 100 x 3 is
104,000). RATE calls per second over the whole fleet, spread evenly over every instance,
posted as NDJSON batches (one per tenth of a second, timestamped within it) for SECONDS
seconds. Latencies are log-normal with a median between 5 and 80 ms that differs by
dependency; 0.3% of calls fail.

The daemon must be started with limits that admit the fleet, for instance:

    [limits]
    max_series = 110000
    max_dependencies = 1000
    max_instances_per_dependency = 100

Every REPORT_EVERY seconds it prints one line: calls posted and refused, the daemon's
resident memory (VmRSS of --pid, and its peak VmHWM) and the evaluation ticks of that interval
read from /metrics: ticks, then the mean and the smallest bucket bound that at least 99% of
them stayed under, of their wall-clock time (`graywatch_evaluation_duration_seconds`) and of
the CPU time of the evaluating thread (`graywatch_evaluation_cpu_seconds`, which waits for a
core do not inflate on a shared machine); for the CPU time also the bucket bound every tick
stayed under and how many ticks took more than 250 ms. The last line sums up the whole run.
"""
import argparse
import http.client
import random
import sys
import time
import urllib.parse


def rss_kib(pid):
    """(VmRSS, VmHWM) of a process in KiB, or (None, None)."""
    if pid is None:
        return None, None
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(value.split()[0])
    except OSError:
        return None, None
    return out.get("VmRSS"), out.get("VmHWM")


PREFIXES = {
    "wall": "graywatch_evaluation_duration_seconds",
    "cpu": "graywatch_evaluation_cpu_seconds",
}


def evaluation_histogram(conn):
    """{"wall"|"cpu": (count, sum, {le: cumulative count})} of the evaluation histograms:
    graywatch_evaluation_duration_seconds (wall-clock time) and
    graywatch_evaluation_cpu_seconds (CPU time of the evaluating thread)."""
    # The daemon closes a keep-alive connection idle for longer than `http.header_timeout`
    # (30 s): between two reports it has, so ask on a fresh connection.
    conn.close()
    conn.request("GET", "/metrics")
    resp = conn.getresponse()
    body = resp.read().decode()
    if resp.status != 200:
        raise SystemExit(f"GET /metrics: {resp.status} {body[:200]}")
    out = {}
    for key, prefix in PREFIXES.items():
        count, total, buckets = 0, 0.0, {}
        for line in body.splitlines():
            if not line.startswith(prefix):
                continue
            name, _, value = line.rpartition(" ")
            if name == prefix + "_count":
                count = int(float(value))
            elif name == prefix + "_sum":
                total = float(value)
            elif name.startswith(prefix + "_bucket{"):
                le = name.split('le="', 1)[1].split('"', 1)[0]
                buckets[float(le)] = int(float(value))
        out[key] = (count, total, buckets)
    return out


# The target for one tick: 250 ms of one core.
TICK_BOUND_S = 0.25


def interval_summary(before, after):
    """Ticks, mean seconds and the 99% bucket bound between two histogram reads."""
    n = after[0] - before[0]
    if n <= 0:
        return 0, None, None
    mean = (after[1] - before[1]) / n
    p99 = None
    for le in sorted(after[2]):
        if after[2][le] - before[2].get(le, 0) >= 0.99 * n:
            p99 = le
            break
    return n, mean, p99


def over(before, after, bound=TICK_BOUND_S):
    """Ticks between two histogram reads that took more than `bound` seconds (a bucket
    bound of the histogram), and the bucket bound every tick stayed under."""
    n = after[0] - before[0]
    within = after[2].get(bound, 0) - before[2].get(bound, 0)
    every = None
    for le in sorted(after[2]):
        if after[2][le] - before[2].get(le, 0) >= n:
            every = le
            break
    return n - within, every


def fmt_s(v):
    return "-" if v is None else ("+Inf" if v == float("inf") else f"{v * 1000:.1f} ms")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--url", default="http://127.0.0.1:9797")
    p.add_argument("--dependencies", type=int, default=1000)
    p.add_argument("--instances", type=int, default=100)
    p.add_argument("--zones", type=int, default=3)
    p.add_argument("--rate", type=float, default=10000.0, help="calls per second, whole fleet")
    p.add_argument("--seconds", type=float, default=300.0)
    p.add_argument("--report-every", type=float, default=10.0)
    p.add_argument("--pid", type=int, help="the daemon's process id, for its memory")
    p.add_argument("--token", help="bearer token, when the daemon requires one")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    if min(a.dependencies, a.instances, a.zones) < 1 or a.rate <= 0 or a.seconds <= 0:
        p.error("counts, rate and seconds must be positive")

    url = urllib.parse.urlsplit(a.url)
    post = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=30)
    scrape = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=30)
    headers = {"content-type": "application/x-ndjson"}
    if a.token:
        headers["authorization"] = f"Bearer {a.token}"

    rng = random.Random(a.seed)
    mu = [rng.uniform(1.6, 4.4) for _ in range(a.dependencies)]
    # The constant part of each (dependency, instance) line, built once.
    heads = [
        (d, f'{{"dependency":"dep-{d:04}.internal","instance":"10.{d // 250}.{d % 250}.{i}",'
            f'"zone":"az-{i % a.zones}","duration_ms":')
        for d in range(a.dependencies)
        for i in range(a.instances)
    ]
    rng.shuffle(heads)
    lognorm = rng.lognormvariate

    tick_s = 0.1
    per_tick = a.rate * tick_s
    carry = 0.0
    cursor = 0
    posted = refused = 0
    started = time.monotonic()
    next_report = started + a.report_every
    first = last = evaluation_histogram(scrape)
    peak_rss = 0
    print(
        f"posting {a.rate:.0f} calls/s over {a.dependencies} x {a.instances} x {a.zones} "
        f"({a.dependencies * (1 + a.instances + a.zones)} series) for {a.seconds:.0f} s",
        flush=True,
    )
    k = 0
    while True:
        t0 = started + k * tick_s
        if t0 - started >= a.seconds:
            break
        delay = t0 - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        carry += per_tick
        n = int(carry)
        carry -= n
        ts0 = int(time.time() * 1000)
        lines = []
        for j in range(n):
            d, head = heads[cursor]
            cursor = (cursor + 1) % len(heads)
            outcome = ',"outcome":"error"' if rng.random() < 0.003 else ""
            ts = ts0 + j * 100 // max(n, 1)
            lines.append(f'{head}{lognorm(mu[d], 0.5):.2f}{outcome},"ts":{ts}}}')
        if lines:
            post.request("POST", "/v1/events", "\n".join(lines).encode(), headers)
            resp = post.getresponse()
            body = resp.read()
            if resp.status != 200:
                raise SystemExit(f"POST /v1/events: {resp.status} {body[:300]!r}")
            posted += n
            refused += int(body.split(b'"rejected":', 1)[1].split(b",", 1)[0].split(b"}", 1)[0])
        k += 1
        now = time.monotonic()
        if now >= next_report:
            next_report += a.report_every
            cur = evaluation_histogram(scrape)
            ticks, mean, p99 = interval_summary(last["wall"], cur["wall"])
            _, cpu_mean, cpu_p99 = interval_summary(last["cpu"], cur["cpu"])
            cpu_over, cpu_all = over(last["cpu"], cur["cpu"])
            last = cur
            rss, hwm = rss_kib(a.pid)
            peak_rss = max(peak_rss, hwm or 0)
            lag = now - t0
            print(
                f"t={now - started:6.0f}s posted={posted} refused={refused} "
                f"rss={'-' if rss is None else f'{rss / 1024:.0f} MiB'} "
                f"hwm={'-' if hwm is None else f'{hwm / 1024:.0f} MiB'} "
                f"ticks={ticks} mean={fmt_s(mean)} p99<={fmt_s(p99)} "
                f"cpu_mean={fmt_s(cpu_mean)} cpu_p99<={fmt_s(cpu_p99)} "
                f"cpu_all<={fmt_s(cpu_all)} cpu_over_{TICK_BOUND_S * 1000:.0f}ms={cpu_over}"
                + (f" behind={lag:.1f}s" if lag > 1 else ""),
                flush=True,
            )
    cur = evaluation_histogram(scrape)
    ticks, mean, p99 = interval_summary(first["wall"], cur["wall"])
    _, cpu_mean, cpu_p99 = interval_summary(first["cpu"], cur["cpu"])
    cpu_over, cpu_all = over(first["cpu"], cur["cpu"])
    rss, hwm = rss_kib(a.pid)
    peak_rss = max(peak_rss, hwm or 0)
    elapsed = time.monotonic() - started
    print(
        f"done: {posted} calls in {elapsed:.0f} s ({posted / elapsed:.0f}/s), {refused} refused; "
        f"evaluation: {ticks} ticks, mean {fmt_s(mean)}, 99% under {fmt_s(p99)}; "
        f"CPU mean {fmt_s(cpu_mean)}, 99% under {fmt_s(cpu_p99)}, all under {fmt_s(cpu_all)}, "
        f"{cpu_over} over {TICK_BOUND_S * 1000:.0f} ms; "
        f"peak RSS {'-' if not peak_rss else f'{peak_rss / 1024:.0f} MiB'}",
        flush=True,
    )
    return 0 if refused == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
