#!/usr/bin/env bash
# Instructions per request (valgrind callgrind, user space, all threads) for a memory hit
# (or, with CALLGRIND_COLD=1, a cold render with unique bytes): the before/after figure that
# machine noise does not move.
#
#   apt-get install -y valgrind nginx wrk
#   benches/callgrind_hit.sh [path/to/imgmirror]     # default target/release/imgmirror
#
# Knobs: CALLGRIND_REQUESTS (default 2000 hits / 60 cold), CALLGRIND_OUT (keep the profile),
# CALLGRIND_CACHE_TOML (extra [cache] lines, e.g. "hot_bytes = 0" for the full hit path).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$(realpath "${1:-target/release/imgmirror}")"
TMP="$(mktemp -d /tmp/imgmirror-callgrind-XXXXXX)"
chmod 755 "$TMP"
cleanup() {
    [ -f "$TMP/origin.pid" ] && kill "$(cat "$TMP/origin.pid")" 2>/dev/null || true
    [ -n "${VG:-}" ] && kill "$VG" 2>/dev/null || true
    sleep 1
    rm -rf "$TMP"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
O=$(port)
P=$(port)
mkdir -p "$TMP/origin"
cp tests/fixtures/photo-1920.jpg "$TMP/origin/"
cat >"$TMP/origin.conf" <<EOF
worker_processes 1;
daemon on;
pid $TMP/origin.pid;
error_log $TMP/origin-error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    types { image/jpeg jpg; }
    server {
        listen 127.0.0.1:$O;
        root $TMP/origin;
        location /u/ { rewrite ^/u/[^/]+/(.*)\$ /\$1 break; add_after_body /tail; addition_types image/jpeg; }
        location = /tail { internal; return 200 "\$request_uri"; }
    }
}
EOF
nginx -c "$TMP/origin.conf" -e "$TMP/origin-error.log"
cat >"$TMP/imgmirror.toml" <<EOF
[server]
listen = "127.0.0.1:$P"
[cache]
dir = "$TMP/cache"
${CALLGRIND_CACHE_TOML:-}
[upstream]
allowed_ports = [80, 443, $O]
allow_cidrs = ["127.0.0.1/32"]
EOF
RUST_LOG=info valgrind --tool=callgrind --callgrind-out-file="$TMP/cg.out" \
    "$BIN" serve --config "$TMP/imgmirror.toml" >"$TMP/imgmirror.log" 2>&1 &
VG=$!
for _ in $(seq 1200); do curl -fs "http://127.0.0.1:$P/healthz" >/dev/null 2>&1 && break; sleep 0.25; done
curl -fs "http://127.0.0.1:$P/healthz" >/dev/null || { tail -20 "$TMP/imgmirror.log"; exit 1; }
URL="http://127.0.0.1:$P/?url=http%3A%2F%2F127.0.0.1%3A$O%2Fphoto-1920.jpg&w=480"
for _ in 1 2 3 4 5; do curl -fs "$URL" -o /dev/null; done
callgrind_control -z "$VG" >/dev/null
if [ -n "${CALLGRIND_COLD:-}" ]; then
    N=${CALLGRIND_REQUESTS:-60}
    for i in $(seq "$N"); do
        curl -fs "http://127.0.0.1:$P/?url=http%3A%2F%2F127.0.0.1%3A$O%2Fu%2Fcg$RANDOM$i%2Fphoto-1920.jpg&w=480" -o /dev/null
    done
else
    N=${CALLGRIND_REQUESTS:-2000}
    # One keep-alive connection, N requests (curl reuses it for repeated URLs).
    args=()
    for _ in $(seq "$N"); do args+=("$URL" -o /dev/null); done
    curl -fs "${args[@]}"
fi
callgrind_control -d "$VG" >/dev/null
sleep 1
OUT=$(ls -t "$TMP"/cg.out* | grep -v '^$' | head -1)
TOTAL=$(callgrind_annotate "$OUT" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
echo "requests: $N  instructions: $TOTAL  per request: $((TOTAL / N))"
if [ -n "${CALLGRIND_OUT:-}" ]; then
    cp "$OUT" "$CALLGRIND_OUT"
    echo "profile: $CALLGRIND_OUT (callgrind_annotate --inclusive=yes $CALLGRIND_OUT)"
fi
