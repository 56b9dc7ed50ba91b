#!/usr/bin/env bash
# The load benchmark: imgmirror beside nginx `proxy_cache` (+ `image_filter`) and thumbor,
# on loopback, in one run, the servers interleaved each round. Prints a Markdown table.
#
#   apt-get install -y nginx libnginx-mod-http-image-filter wrk python3-venv valgrind
#   python3 -m venv /tmp/thumbor-venv && /tmp/thumbor-venv/bin/pip install thumbor
#   benches/load.sh                       # ~6 minutes with the defaults below
#
# Knobs (environment):
#   LOAD_ROUNDS=3          rounds; every round runs every scenario on every server
#   LOAD_SECONDS=5         seconds of each wrk run (A, B, C)
#   LOAD_ONE_SECONDS=3     seconds of the one-connection cold run
#   LOAD_CONNECTIONS=32    wrk connections
#   LOAD_RSS_SECONDS=10    seconds of scenario E (4000 px cold renders, RSS sampled)
#   LOAD_THUMBOR=path      thumbor executable (default: /tmp/thumbor-venv/bin/thumbor, then PATH)
#   IMGMIRROR_BIN=path     imgmirror binary (default: target/release/imgmirror, built here)
#   LOAD_SKIP_BUILD=1      don't run `cargo build --release`
#   LOAD_ONLY=A,C          only these scenarios (A B C D E F)
#   LOAD_RSS_EXTRA=toml    appended to the [cache] table of E's imgmirror config (later
#                          tables may follow: $'\n[transform]\nworkers = 1\n')
#
# Everything listens on 127.0.0.1 on free ports and lives in a temporary directory that is
# removed at the end; every server is stopped on exit, even on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in nginx wrk python3; do
    command -v "$tool" >/dev/null || { echo "load.sh: $tool not found (see the install line at the top)" >&2; exit 2; }
done
[ -e /usr/lib/nginx/modules/ngx_http_image_filter_module.so ] ||
    { echo "load.sh: install libnginx-mod-http-image-filter (nginx cold renders)" >&2; exit 2; }

if [ -z "${IMGMIRROR_BIN:-}" ]; then
    if [ -z "${LOAD_SKIP_BUILD:-}" ]; then
        cargo build --release --locked --bin imgmirror >&2
    fi
    export IMGMIRROR_BIN="$PWD/target/release/imgmirror"
fi
if [ -z "${LOAD_THUMBOR:-}" ]; then
    if [ -x /tmp/thumbor-venv/bin/thumbor ]; then
        LOAD_THUMBOR=/tmp/thumbor-venv/bin/thumbor
    else
        LOAD_THUMBOR="$(command -v thumbor || true)"
    fi
fi
[ -n "$LOAD_THUMBOR" ] || { echo "load.sh: thumbor not found (pip install thumbor)" >&2; exit 2; }
export LOAD_THUMBOR

# Bounded: the whole run is killed if it takes far longer than its knobs say.
exec timeout --signal=INT --kill-after=30 "${LOAD_TIMEOUT:-1200}" python3 benches/load.py "$@"
