#!/usr/bin/env bash
# HTTP ingest throughput: wrk posts 1000-event JSON batches to a release build of graywatch
# on the same machine and we report accepted events per second.
#
#   benches/http_ingest.sh [seconds] [connections] [wrk threads]
#
# Needs wrk (Debian package `wrk`; installed when missing and running as root).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
conns=${2:-16}
threads=${3:-1}
port=${GRAYWATCH_BENCH_PORT:-19797}

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
cargo build --release --quiet --bin graywatch

work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT

# 1000 events over 8 dependencies x 10 instances x 3 zones, no ts (= time of receipt).
python3 - "$work/body.json" <<'PY'
import json, random, sys
random.seed(7)
events = [{
    "dependency": f"svc-{random.randrange(8)}.internal",
    "duration_ms": round(random.lognormvariate(3, 0.8), 3),
    "outcome": "error" if random.random() < 0.01 else "ok",
    "instance": f"10.0.{random.randrange(8)}.{random.randrange(10)}",
    "zone": random.choice(["eu-west-1a", "eu-west-1b", "eu-west-1c"]),
    "source": "checkout",
} for _ in range(1000)]
open(sys.argv[1], "w").write(json.dumps(events))
PY

cat > "$work/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("$work/body.json", "rb")
wrk.body = f:read("*all")
f:close()
local non200 = 0
response = function(status, headers, body)
  if status ~= 200 then non200 = non200 + 1 end
end
done = function(summary, latency, requests)
  io.write(string.format("requests=%d errors_status=%d duration_s=%.2f\n",
    summary.requests, summary.errors.status, summary.duration / 1e6))
  io.write(string.format("events_per_s=%.0f p99_ms=%.2f\n",
    summary.requests * 1000 / (summary.duration / 1e6), latency:percentile(99) / 1000))
end
LUA

RUST_LOG=warn "${CARGO_TARGET_DIR:-target}/release/graywatch" serve --listen "127.0.0.1:$port" \
  --database "sqlite://$work/bench.db" &
pid=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done

wrk -t"$threads" -c"$conns" -d"${secs}s" -s "$work/post.lua" "http://127.0.0.1:$port/v1/events"
echo "server RSS (KiB): $(ps -o rss= -p "$pid")"
curl -fs "http://127.0.0.1:$port/v1/dependencies" | python3 -c '
import json, sys
d = json.load(sys.stdin)["dependencies"]
print("dependencies:", len(d), "events in the last minute:", sum(x["stats"]["total"] for x in d))'
