#!/usr/bin/env bash
# Memory soak: a release imgmirror under a long mixed load, its RSS printed every 10 s,
# then a verdict on whether RSS still grows in the second half of the run.
#
#   scripts/soak.sh                 # 5 minutes
#   SOAK_SECS=180 scripts/soak.sh   # shorter
#
# Load: ~90 % hits over 50 variants (5 originals x 10 widths, rendered once during the
# warm-up), ~10 % cold requests: a new upstream URL each time whose bytes are new too
# (the origin appends the path to the image), so every cold request is a fetch, a store
# write, a probe and a render. The origin is a small Python server on 127.0.0.1 serving
# tests/fixtures photos. Load comes from wrk (`apt-get install wrk`) when installed, else
# from a Python load generator (slower, same mix).
#
# Knobs (environment): SOAK_SECS (300), SOAK_CONNS (16 connections), SOAK_THREADS (2,
# wrk threads), SOAK_COLD_PCT (10), SOAK_DISK_BYTES (512 MiB: cache.max_disk_bytes, with
# originals evictable, so a long soak does not fill the disk and reaches its steady state,
# evicting as much as it writes, within the first minute or two), SOAK_BIN (an imgmirror
# binary; default target/release/imgmirror, built if missing), SOAK_KEEP=1 keeps the
# temp dir. IMGMIRROR_* variables set by the caller (e.g. IMGMIRROR_CACHE_MEMORY_BYTES)
# reach the server, so budgets can be varied.
#
# Each line: seconds, RSS, originals on disk and evictions so far (from /metrics), so the
# curve can be read against the store's own state: RSS should stop rising once the disk
# budget evicts (the URL map and index then stop growing) and the memory layer is full.
#
# Verdict, both halves of it able to fail:
# - flat: the least-squares slope of RSS over the second half, times its length, is under
#   12 MiB or 2.5 % (whichever is larger), so one sample at a peak or a trough of the
#   allocator's give-back does not decide it. (With 24 MiB / 5 %, a server whose RSS rose
#   9.5 MiB a minute, about 0.5 GiB an hour, passed a 300 s run as flat.);
# - under the ceiling: the peak RSS (VmHWM) stays under README "Memory"'s figure for this
#   run, computed from the effective config (file + IMGMIRROR_CACHE_* variables): the
#   caches all told + 32 MiB (binary, runtime, threads) + 32 MiB per render worker (a
#   render of the load's largest photo, 1920x1280, decoded, resized, encoded) + 1 MiB per
#   connection (bodies in flight). SOAK_CEILING_MIB overrides it.
# Exit status: 0 when flat and under the ceiling, 1 when not, 2 when the run failed.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
secs="${SOAK_SECS:-300}"
conns="${SOAK_CONNS:-16}"
threads="${SOAK_THREADS:-2}"
cold_pct="${SOAK_COLD_PCT:-10}"
disk_bytes="${SOAK_DISK_BYTES:-536870912}"
bin="${SOAK_BIN:-$repo/target/release/imgmirror}"

if [[ ! -x "$bin" ]]; then
  echo "building $bin (cargo build --release)…" >&2
  (cd "$repo" && cargo build --release --locked --bin imgmirror)
fi

work="$(mktemp -d /tmp/imgmirror-soak.XXXXXX)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [[ "${SOAK_KEEP:-0}" == 1 ]]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# --- the origin: /p/<fixture>/<tag> = the fixture's bytes + "<tag>" after the image ---
cat >"$work/origin.py" <<'EOF'
import http.server, os, sys
fixtures, port_file = sys.argv[1], sys.argv[2]
cache = {}
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        parts = self.path.split("/", 3)
        name = parts[2] if len(parts) == 4 and parts[1] == "p" else ""
        if name not in cache and name and "/" not in name and os.path.isfile(os.path.join(fixtures, name)):
            with open(os.path.join(fixtures, name), "rb") as f:
                cache[name] = f.read()
        if name not in cache:
            self.send_response(404); self.send_header("content-length", "0"); self.end_headers(); return
        # Bytes after the image's end marker: decoders ignore them, but every tag makes
        # a distinct original (a new SHA-256, a new object, new variants).
        body = cache[name] + b"\n" + parts[3].encode()
        self.send_response(200)
        self.send_header("content-type", "image/jpeg")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(port_file, "w") as f:
    f.write(str(server.server_address[1]))
server.serve_forever()
EOF
python3 "$work/origin.py" "$repo/tests/fixtures" "$work/origin.port" &
pids+=($!)
for _ in $(seq 50); do [[ -s "$work/origin.port" ]] && break; sleep 0.1; done
origin="127.0.0.1:$(cat "$work/origin.port")"

# --- the server: shipped defaults, the loopback origin allowed, a bounded disk ---
port="$(free_port)"
export IMGMIRROR_SERVER_LISTEN="127.0.0.1:$port"
export IMGMIRROR_CACHE_DIR="$work/cache"
export IMGMIRROR_UPSTREAM_ALLOW_CIDRS='["127.0.0.1/32"]'
export IMGMIRROR_UPSTREAM_ALLOWED_PORTS="[80, 443, ${origin##*:}]"
export IMGMIRROR_CACHE_MAX_DISK_BYTES="$disk_bytes"
export IMGMIRROR_CACHE_EVICT_ORIGINALS=true
export IMGMIRROR_LOG="${IMGMIRROR_LOG:-warn}"
# Every load connection is one client IP: lift a per-client expensive-work limit if this
# build has one, so cold requests measure memory rather than 429s.
if grep -q '^per_client_expensive' "$repo/config/imgmirror.toml"; then
  export IMGMIRROR_SERVER_PER_CLIENT_EXPENSIVE="${IMGMIRROR_SERVER_PER_CLIENT_EXPENSIVE:-1024}"
fi
"$bin" serve --config "$repo/config/imgmirror.toml" 2>"$work/server.log" &
server_pid=$!
pids+=("$server_pid")
base="http://127.0.0.1:$port"
for _ in $(seq 100); do curl -sf "$base/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -sf "$base/healthz" >/dev/null || { echo "server did not start:" >&2; cat "$work/server.log" >&2; exit 2; }

hot_files=(photo-1080.jpg photo-480.jpg astronaut-512.jpg exif-orientation-6-gps.jpg photo-1920.jpg)
hot_url() { # $1 = 0..49
  local i=$1
  echo "/?url=http://$origin/p/${hot_files[$((i % 5))]}/hot&w=$((200 + 40 * (i / 5)))"
}
cold_url() { # $1 = unique tag
  echo "/?url=http://$origin/p/photo-480.jpg/cold-$1&w=240"
}

echo "warming 50 variants…" >&2
for i in $(seq 0 49); do
  code="$(curl -s -o /dev/null -w '%{http_code}' "$base$(hot_url "$i")")"
  [[ "$code" == 200 ]] || { echo "warm-up $(hot_url "$i") answered $code" >&2; cat "$work/server.log" >&2; exit 2; }
done
code="$(curl -s -o /dev/null -w '%{http_code}' "$base$(cold_url warmup)")"
[[ "$code" == 200 ]] || { echo "cold request answered $code" >&2; exit 2; }

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$server_pid/status" 2>/dev/null || echo 0; }
# "<originals on disk> <evictions, originals + variants>" from /metrics ("- -" if absent).
store_state() {
  curl -s --max-time 5 "$base/metrics" | awk '
    /^imgmirror_store_objects\{kind="original"\}/ {o = $2}
    /^imgmirror_evictions_total/ {e += $2}
    END {if (o == "") print "- -"; else printf "%d %d\n", o, e}'
}

# --- the load ---
if command -v wrk >/dev/null; then
  cat >"$work/mix.lua" <<EOF
local hot = {"photo-1080.jpg", "photo-480.jpg", "astronaut-512.jpg", "exif-orientation-6-gps.jpg", "photo-1920.jpg"}
local next_id = 1
function setup(thread) thread:set("id", next_id); next_id = next_id + 1 end
local n = 0
function request()
  n = n + 1
  local path
  if math.random(100) <= $cold_pct then
    path = "/?url=http://$origin/p/photo-480.jpg/cold-" .. id .. "-" .. n .. "&w=240"
  else
    local i = math.random(50) - 1
    path = "/?url=http://$origin/p/" .. hot[(i % 5) + 1] .. "/hot&w=" .. (200 + 40 * math.floor(i / 5))
  end
  return wrk.format("GET", path)
end
EOF
  load_desc="wrk, $conns connections, $threads threads"
  wrk -t"$threads" -c"$conns" -d"${secs}s" --timeout 30s -s "$work/mix.lua" "$base" >"$work/load.out" 2>&1 &
else
  cat >"$work/load.py" <<'EOF'
import http.client, random, sys, threading, time
host, port, secs, conns, cold_pct, origin = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
hot = ["photo-1080.jpg", "photo-480.jpg", "astronaut-512.jpg", "exif-orientation-6-gps.jpg", "photo-1920.jpg"]
stats = {"requests": 0, "non2xx": 0, "errors": 0}
lock = threading.Lock()
end = time.time() + secs
def worker(wid):
    conn, n = http.client.HTTPConnection(host, port, timeout=30), 0
    while time.time() < end:
        n += 1
        if random.randrange(100) < cold_pct:
            path = f"/?url=http://{origin}/p/photo-480.jpg/cold-py{wid}-{n}&w=240"
        else:
            i = random.randrange(50)
            path = f"/?url=http://{origin}/p/{hot[i % 5]}/hot&w={200 + 40 * (i // 5)}"
        try:
            conn.request("GET", path); r = conn.getresponse(); r.read(); bad = not 200 <= r.status < 300
            with lock:
                stats["requests"] += 1; stats["non2xx"] += bad
        except Exception:
            with lock: stats["errors"] += 1
            conn.close(); conn = http.client.HTTPConnection(host, port, timeout=30)
threads = [threading.Thread(target=worker, args=(i,)) for i in range(conns)]
[t.start() for t in threads]; [t.join() for t in threads]
print(f"{stats['requests']} requests in {secs:.0f}s, {stats['requests'] / secs:.0f} req/s; non-2xx {stats['non2xx']}; errors {stats['errors']}")
EOF
  load_desc="python load generator, $conns connections"
  python3 "$work/load.py" 127.0.0.1 "$port" "$secs" "$conns" "$cold_pct" "$origin" >"$work/load.out" 2>&1 &
fi
load_pid=$!
pids+=("$load_pid")

echo "soak: ${secs}s, $load_desc, ${cold_pct}% cold; server pid $server_pid"
printf '%6s  %9s  %9s  %9s\n' "t (s)" "RSS (MiB)" "originals" "evictions"
samples=()
times=()
start=$(date +%s)
sample() { # $1 = seconds since the start
  local rss
  rss=$(rss_kib)
  samples+=("$rss")
  times+=("$1")
  # shellcheck disable=SC2046 # two words on purpose
  printf '%6d  %9.1f  %9s  %9s\n' "$1" "$(awk -v k="$rss" 'BEGIN {print k / 1024}')" $(store_state)
}
sample 0
while kill -0 "$load_pid" 2>/dev/null; do
  sleep 10
  kill -0 "$server_pid" 2>/dev/null || { echo "server died" >&2; cat "$work/server.log" >&2; exit 2; }
  sample $(($(date +%s) - start))
done
wait "$load_pid" || true
cat "$work/load.out"
peak_kib="$(awk '/^VmHWM/ {print $2}' "/proc/$server_pid/status")"
disk_mib="$(du -sm "$work/cache" | cut -f1)"

# --- verdict: the second half's slope, and the peak against the budgets' sum ---
workers="$(awk -F= '/^workers *=/ {gsub(/[ #].*/, "", $2); print $2; exit}' "$repo/config/imgmirror.toml")"
workers="${IMGMIRROR_TRANSFORM_WORKERS:-${workers:-0}}"
((workers > 0)) || workers="$(nproc)"
python3 - "$repo/config/imgmirror.toml" "$workers" "$conns" "$peak_kib" "$disk_mib" \
  "${times[*]}" "${samples[*]}" <<'EOF'
import os, sys, tomllib
config, (workers, conns, peak, disk) = sys.argv[1], (int(x) for x in sys.argv[2:6])
times = [int(x) for x in sys.argv[6].split()]
rss = [int(x) / 1024 for x in sys.argv[7].split()]  # MiB
with open(config, "rb") as f:
    cache = tomllib.load(f)["cache"]
def key(name):
    return int(os.environ.get("IMGMIRROR_CACHE_" + name.upper(), cache[name]))
caches = sum(key(k) for k in ("memory_bytes", "index_cache_bytes", "url_map_bytes",
                              "negative_bytes", "probe_cache_bytes", "expensive_bytes"))
caches += min(key("hot_bytes"), key("memory_bytes") // 8)
caches /= 1 << 20
ceiling = caches + 32 + 32 * workers + conns
ceiling = float(os.environ.get("SOAK_CEILING_MIB", ceiling))
half = len(rss) // 2
t2, r2 = times[half:], rss[half:]
if len(r2) < 3:
    print("too few samples for a verdict (run longer)")
    sys.exit(2)
mt, mr = sum(t2) / len(t2), sum(r2) / len(r2)
slope = sum((t - mt) * (r - mr) for t, r in zip(t2, r2)) / sum((t - mt) ** 2 for t in t2)
growth = slope * (t2[-1] - t2[0])
print(f"RSS after 10 s {rss[1]:.1f} MiB, at half time {r2[0]:.1f} MiB, "
      f"at the end {r2[-1]:.1f} MiB, max in the second half {max(r2):.1f} MiB, "
      f"peak (VmHWM) {peak / 1024:.1f} MiB; cache dir {disk} MiB on disk")
print(f"second half: slope {slope * 60:+.2f} MiB/min, {growth:+.1f} MiB over "
      f"{t2[-1] - t2[0]} s ({100 * growth / r2[0]:+.1f} %)")
print(f"ceiling {ceiling:.0f} MiB = caches {caches:.0f} MiB + 32 MiB runtime + "
      f"{workers} workers x 32 MiB + {conns} connections x 1 MiB")
flat = growth < max(12, 0.025 * r2[0])
under = peak / 1024 <= ceiling
print("verdict: " + ("FLAT" if flat else "RISING") + ", "
      + ("UNDER the ceiling" if under else "OVER the ceiling"))
sys.exit(0 if flat and under else 1)
EOF
