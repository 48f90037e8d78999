#!/usr/bin/env bash
# Ingest soak: wrk posts 1000-event JSON batches over a few thousand series to a release build
# of graywatch for a long time, at a paced rate, while this script samples the daemon's
# resident memory and the accepted-event counter every SAMPLE seconds.
#
#   benches/ingest_soak.sh [minutes] [connections] [delay_ms]
#
# Each of the `connections` (default 4) posts a batch, then waits `delay_ms` (default 4)
# before the next: about connections x 1000 / (delay + response time) events a second. The
# batches cover 200 dependencies x 10 instances x 3 zones: 2,000 instance series, 600 zone
# series and 200 dependency totals. Prints one line per sample, then the RSS after the
# warm-up (the first 5 minutes) against the last sample.
#
# Needs wrk (Debian package `wrk`; installed when missing and running as root).
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-30}
conns=${2:-4}
delay=${3:-4}
sample=${SAMPLE:-30}
port=${GRAYWATCH_BENCH_PORT:-19798}

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
cargo build --release --quiet --bin graywatch

work=$(mktemp -d)
trap 'kill "$pid" "$wrk_pid" 2>/dev/null || true; rm -rf "$work"' EXIT

# Eight different batches, so that every series sees calls.
python3 - "$work" <<'PY'
import json, random, sys
random.seed(11)
for b in range(8):
    events = []
    for _ in range(1000):
        d = random.randrange(200)
        events.append({
            "dependency": f"soak-{d:03}.internal",
            "duration_ms": round(random.lognormvariate(3, 0.6), 3),
            "outcome": "error" if random.random() < 0.005 else "ok",
            "instance": f"10.{d}.0.{random.randrange(10)}",
            "zone": random.choice(["eu-west-1a", "eu-west-1b", "eu-west-1c"]),
        })
    open(f"{sys.argv[1]}/body{b}.json", "w").write(json.dumps(events))
PY

cat > "$work/post.lua" <<LUA
local bodies = {}
for b = 0, 7 do
  local f = io.open("$work/body" .. b .. ".json", "rb")
  bodies[b + 1] = f:read("*all")
  f:close()
end
local n = 0
request = function()
  n = n + 1
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, bodies[(n % 8) + 1])
end
delay = function() return $delay end
done = function(summary, latency, requests)
  io.write(string.format("wrk: requests=%d non-2xx=%d duration_s=%.0f p99_ms=%.2f\n",
    summary.requests, summary.errors.status, summary.duration / 1e6,
    latency:percentile(99) / 1000))
end
LUA

RUST_LOG=warn "${CARGO_TARGET_DIR:-target}/release/graywatch" serve --listen "127.0.0.1:$port" \
  --database "sqlite://$work/soak.db" &
pid=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done

wrk -t1 -c"$conns" -d"$((minutes * 60))s" --timeout 10s -s "$work/post.lua" \
  "http://127.0.0.1:$port/v1/events" > "$work/wrk.out" &
wrk_pid=$!

accepted() {
  curl -fs "http://127.0.0.1:$port/metrics" |
    awk '/^graywatch_events_accepted_total/ { s += $2 } END { printf "%.0f", s }'
}
start=$(date +%s)
last=$(accepted)
warm_rss=""
while kill -0 "$wrk_pid" 2>/dev/null; do
  sleep "$sample"
  now=$(date +%s)
  rss=$(ps -o rss= -p "$pid" | tr -d ' ')
  total=$(accepted)
  echo "t=$((now - start))s rss_kib=$rss events_per_s=$(((total - last) / sample)) accepted=$total series=$(curl -fs "http://127.0.0.1:$port/metrics" | awk '/^graywatch_series\{/ { s += $2 } END { printf "%.0f", s }')"
  last=$total
  if [ -z "$warm_rss" ] && [ $((now - start)) -ge 300 ]; then warm_rss=$rss; fi
done
cat "$work/wrk.out"
echo "rss after warm-up: ${warm_rss:-n/a} KiB, last: $rss KiB"
