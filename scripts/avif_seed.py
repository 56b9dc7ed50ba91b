#!/usr/bin/env python3
"""AVIF against WebP on the seed article's renders, through a release imgmirror over HTTP:
bytes of each answer and the server's CPU per render (utime + stime from /proc/<pid>/stat
around each request, one request at a time). The same figures as
`cargo bench --bench avif_seed`, measured on the binary operators run, without a bench
build.

    cargo build --release --locked && scripts/avif_seed.py [--speed 10] [--quality 60]

For every <img> of tests/fixtures/seed-article.md: the fixture photo the test origin
serves for it (tests/it/support/origin.rs `qupost_file`), at its data-size, 1x and 2x;
distinct (photo, size) pairs are rendered once each. The origin is a Python server on
127.0.0.1; the original is fetched before the renders are timed. Prints a Markdown table.
"""
import argparse
import http.server
import os
import re
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures"
BIN = ROOT / "target" / "release" / "imgmirror"
TICK = os.sysconf("SC_CLK_TCK")
FILES = ["photo-480.jpg", "astronaut-512.jpg", "photo-1080.jpg"]


def served_file(name):
    return FILES[sum(name.encode()) % len(FILES)]


def seed_renders():
    text = (FIX / "seed-article.md").read_text()
    out = []
    for tag in text.split("<img")[1:]:
        src = re.search(r'src="([^"]+)"', tag)
        size = re.search(r'data-size="(\d+),(\d+)"', tag)
        if not (src and size):
            continue
        name = src.group(1).rsplit("/", 1)[-1]
        for dpr in (1, 2):
            pair = (served_file(name), f"w={size.group(1)}&h={size.group(2)}&dpr={dpr}")
            if pair not in out:
                out.append(pair)
    return out


def origin():
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_GET(self):
            path = FIX / self.path.strip("/")
            data = path.read_bytes() if path.is_file() else b""
            self.send_response(200 if data else 404)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True

    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def get(url):
    with urllib.request.urlopen(url, timeout=120) as r:
        return r.headers.get("Content-Type"), r.read()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--speed", default="10")
    p.add_argument("--quality", default="60")
    args = p.parse_args()
    if not BIN.exists():
        raise SystemExit(f"{BIN} missing: cargo build --release --locked")
    o = origin()
    port = free_port()
    work = tempfile.mkdtemp(prefix="avif-seed-")
    conf = Path(work) / "imgmirror.toml"
    conf.write_text(f"""
[server]
listen = "127.0.0.1:{port}"
[cache]
dir = "{work}/cache"
[upstream]
allowed_ports = [80, 443, {o}]
allow_cidrs = ["127.0.0.1/32"]
[transform]
avif_speed = {args.speed}
avif_quality = {args.quality}
render_timeout_secs = 120
""")
    server = subprocess.Popen([str(BIN), "serve", "--config", str(conf)],
                              stderr=subprocess.DEVNULL, env={**os.environ, "IMGMIRROR_LOG": "warn"})
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                get(f"{base}/healthz")
                break
            except OSError:
                time.sleep(0.1)
        renders = seed_renders()
        for f in FILES:
            get(f"{base}/?url=" + urllib.parse.quote(f"http://127.0.0.1:{o}/{f}", safe=""))
        rows, totals = [], {"webp": [0, 0.0], "avif": [0, 0.0]}
        for f, query in renders:
            row = [f, query]
            for fmt in ("webp", "avif"):
                url = f"{base}/?url=" + urllib.parse.quote(f"http://127.0.0.1:{o}/{f}", safe="") \
                    + f"&{query}&format={fmt}"
                before = cpu(server.pid)
                kind, body = get(url)
                spent = (cpu(server.pid) - before) * 1000
                assert kind == f"image/{fmt}", (url, kind)
                totals[fmt][0] += len(body)
                totals[fmt][1] += spent
                row.append(f"{len(body)} B, {spent:.0f} ms")
            rows.append(row)
        print(f"AVIF q{args.quality} speed {args.speed} against WebP (default quality), "
              f"{len(renders)} distinct seed renders, server CPU per render "
              f"(10 ms clock ticks: per-row figures are coarse, totals are not)\n")
        print("| photo | query | WebP | AVIF |")
        print("|---|---|---|---|")
        for r in rows:
            print("| " + " | ".join(r) + " |")
        (wb, wc), (ab, ac) = totals["webp"], totals["avif"]
        print(f"| **total** | | {wb} B, {wc:.0f} ms | {ab} B ({ab / wb:.2f}× WebP), "
              f"{ac:.0f} ms ({ac / max(wc, 1):.1f}× WebP) |")
    finally:
        server.terminate()
        server.wait(timeout=30)
        subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    sys.exit(main())
