#!/usr/bin/env python3
"""What each attack of issue 8 costs a release imgmirror: CPU seconds (utime + stime of
the server process, from /proc/<pid>/stat) and peak RSS (VmHWM), each attack against a
fresh server, with its defences on (the default config) and, where that is safe to run,
with them configured off ("lifted": the same binary with the limits raised), plus how an
honest request sent during the attack fared. Prints a Markdown table (docs/attack-costs.md).

    cargo build --release --locked && scripts/attack_cost.py [--cap SECS] [--only NAME]

Needs Python 3 and Pillow (pip install pillow) to build the scan bomb. Loopback only: the
origin is a Python server on 127.0.0.1 serving the hostile files it writes to a temp dir.
"""
import argparse
import http.server
import os
import resource
import shutil
import socket
import socketserver
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures"
BIN = ROOT / "target" / "release" / "imgmirror"
TICK = os.sysconf("SC_CLK_TCK")


# ---- hostile files ---------------------------------------------------------------------

def scan_ranges(jpeg):
    """(start, end) of each SOS segment with its entropy-coded data."""
    scans, at = [], 2
    while at + 4 <= len(jpeg) and jpeg[at] == 0xFF and jpeg[at + 1] != 0xD9:
        length = struct.unpack(">H", jpeg[at + 2:at + 4])[0]
        end = at + 2 + length
        if jpeg[at + 1] == 0xDA:
            while jpeg[end] != 0xFF or jpeg[end + 1] in (0x00, *range(0xD0, 0xD8)):
                end += 1
            scans.append((at, end))
        at = end
    return scans


def scan_bomb(copies=5000):
    """A 4000x2500 progressive JPEG with its smallest AC-first scan repeated `copies` times:
    each copy is a pass over every block (as src/transform/hostile_tests/attack_cost.rs)."""
    from PIL import Image
    import io
    img = Image.linear_gradient("L").resize((4000, 2500)).convert("RGB")
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=80, progressive=True)
    base = buf.getvalue()

    def ac_first(r):
        s = r[0]
        ns = base[s + 4]
        return base[s + 5 + 2 * ns] > 0 and base[s + 7 + 2 * ns] >> 4 == 0
    s, e = min((r for r in scan_ranges(base) if ac_first(r)), key=lambda r: r[1] - r[0])
    return base[:e] + base[s:e] * copies + base[e:]


def gif(w, h, frames, fw=None, fh=None):
    """`frames` frames of fw×fh (default: the screen) with one pixel of LZW data each."""
    fw, fh = fw or w, fh or h
    v = bytearray(b"GIF89a" + struct.pack("<HH", w, h) + bytes([0x80, 0, 0, 0, 0, 0, 255, 255, 255]))
    for _ in range(frames):
        v += bytes([0x21, 0xF9, 0x04, 0x00, 0x01, 0x00, 0x00, 0x00, 0x2C])
        v += struct.pack("<HHHH", 0, 0, fw, fh) + bytes([0x00, 0x02, 0x02, 0x44, 0x01, 0x00])
    return bytes(v + b"\x3b")


def vp8l_bomb(w, h):
    payload = b"\x2f" + struct.pack("<I", (w - 1) | ((h - 1) << 14)) + bytes(64)
    payload += b"\0" * (len(payload) % 2)
    chunk = b"VP8L" + struct.pack("<I", len(payload)) + payload
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def write_files(d):
    files = {
        "scans.jpg": scan_bomb(),
        "bomb.jpg": (FIX / "bomb-50000.jpg").read_bytes(),
        "bomb.png": (FIX / "bomb-50000.png").read_bytes(),
        "bomb.gif": gif(20000, 20000, 2),
        "bomb.webp": vp8l_bomb(16384, 16384),
        "frames.gif": gif(500, 500, 10_000, 1, 1),
        "pan-anim.gif": (FIX / "pan-anim.gif").read_bytes(),
        "photo-1080.jpg": (FIX / "photo-1080.jpg").read_bytes(),
        "photo-480.jpg": (FIX / "photo-480.jpg").read_bytes(),
    }
    for name, data in files.items():
        (d / name).write_bytes(data)
    return {k: len(v) for k, v in files.items()}


# ---- the origin ------------------------------------------------------------------------

TYPES = {".jpg": "image/jpeg", ".png": "image/png", ".gif": "image/gif", ".webp": "image/webp"}


def origin(directory):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_GET(self):
            parts = self.path.split("?")[0].strip("/").split("/")
            trickle = parts[0] == "trickle"
            name = parts[-1]
            path = directory / name
            if not path.is_file():
                self.send_error(404)
                return
            data = path.read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", TYPES.get(path.suffix, "application/octet-stream"))
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            try:
                if trickle:  # a tarpit: one byte a second
                    for b in data:
                        self.wfile.write(bytes([b]))
                        self.wfile.flush()
                        time.sleep(1)
                else:
                    self.wfile.write(data)
            except OSError:
                pass

    class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True
        request_queue_size = 512

    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# ---- the imgmirror under test ----------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Imgmirror:
    def __init__(self, work, origin_port, extra):
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(dir=work))
        config = self.dir / "imgmirror.toml"
        sections = {
            "server": {"listen": f'"127.0.0.1:{self.port}"'},
            "cache": {"dir": f'"{self.dir / "cache"}"'},
            "upstream": {"allow_cidrs": '["127.0.0.1/32"]', "allowed_ports": f"[80, 443, {origin_port}]"},
        }
        for key, value in extra.items():
            section, name = key.split(".")
            sections.setdefault(section, {})[name] = value
        config.write_text("".join(
            f"[{s}]\n" + "".join(f"{k} = {v}\n" for k, v in kv.items()) for s, kv in sections.items()))
        env = dict(os.environ, IMGMIRROR_LOG="error")
        self.proc = subprocess.Popen([str(BIN), "serve", "--config", str(config)], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                urllib.request.urlopen(self.url("/healthz"), timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise SystemExit("imgmirror did not start")

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def cpu(self):
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime

    def peak_rss_mb(self):
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def get(url, timeout):
    """(status or error name, seconds)."""
    started = time.time()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        status = e.code
    except (OSError, TimeoutError) as e:
        status = type(e).__name__
    return status, time.time() - started


def honest_get(url, timeout):
    """`get` from another client address (127.0.0.2): the attacks all come from 127.0.0.1,
    and the honest client must not share their per-client limit. (status, seconds)."""
    import http.client
    started = time.time()
    parts = urllib.parse.urlsplit(url)
    try:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout,
                                          source_address=("127.0.0.2", 0))
        conn.request("GET", parts.path + "?" + parts.query)
        response = conn.getresponse()
        response.read()
        status = response.status
        conn.close()
    except (OSError, TimeoutError) as e:
        status = type(e).__name__
    return status, time.time() - started


def proxy(server, upstream, options=""):
    return server.url("/?url=" + urllib.parse.quote(upstream, safe="") + options)


# ---- the attacks -----------------------------------------------------------------------

def parallel(urls, timeout):
    results = [None] * len(urls)

    def one(i, u):
        results[i] = get(u, timeout)[0]
    threads = [threading.Thread(target=one, args=(i, u)) for i, u in enumerate(urls)]
    for t in threads:
        t.start()
    return threads, results


def run_requests(urls):
    def attack(server, o, cap):
        threads, results = parallel([u(server, o) for u in urls], cap)
        return threads, lambda: summary(results)
    return attack


def summary(results):
    counts = {}
    for r in results:
        counts[r] = counts.get(r, 0) + 1
    return ", ".join(f"{n}× {s}" for s, n in counts.items())


def slowloris(server, o, cap):
    socks = []
    for _ in range(1100):
        s = socket.socket()
        s.connect(("127.0.0.1", server.port))
        socks.append(s)

    def wait():
        end = time.time() + min(cap, 15)
        while time.time() < end:
            time.sleep(0.5)
    t = threading.Thread(target=wait)
    t.start()

    def outcome():
        open_ = 0
        for s in socks:
            s.setblocking(False)
            try:
                open_ += s.recv(1) != b""
            except BlockingIOError:
                open_ += 1
            except OSError:
                pass
            s.close()
        return f"{open_} of 1100 idle sockets still open after 15 s"
    return [t], outcome


def tarpit(server, o, cap):
    # 64 slow fetches from one host (127.0.0.1); the honest request goes to "localhost".
    urls = [proxy(server, f"http://127.0.0.1:{o}/trickle/{i}/photo-480.jpg") for i in range(64)]
    threads, results = parallel(urls, cap)
    return threads, lambda: summary(results)


LIFT_RENDER = {"transform.render_timeout_secs": "86400"}
ATTACKS = [
    # name, attack, lifted config (None: not run lifted), note
    ("scan bomb (4 × 5000-scan JPEG, 4000×2500)",
     run_requests([(lambda s, o, w=w: proxy(s, f"http://127.0.0.1:{o}/f/scans.jpg", f"&w={w}")) for w in range(100, 104)]),
     {"transform.max_jpeg_scans": "1000000000", **LIFT_RENDER}, ""),
    ("pixel bombs (JPEG, PNG, GIF, WebP; 0.4–2.5 Gpx each)",
     run_requests([(lambda s, o, n=n: proxy(s, f"http://127.0.0.1:{o}/f/{n}", "&w=100"))
                   for n in ["bomb.jpg", "bomb.png", "bomb.gif", "bomb.webp"]]),
     None, "lifted would allocate 2.5–7.5 GB per bomb: not run"),
    ("GIF of 10,000 frames 500×500, format=gif",
     run_requests([lambda s, o: proxy(s, f"http://127.0.0.1:{o}/f/frames.gif", "&w=400&format=gif")]),
     {"transform.max_frames": "100000", "transform.max_output_pixels_total": "100000000000000", **LIFT_RENDER}, ""),
    ("animation at 7000×7000 (pan-anim.gif, fit=fill, enlarge)",
     run_requests([lambda s, o: proxy(s, f"http://127.0.0.1:{o}/f/pan-anim.gif",
                                      "&w=7000&h=7000&fit=fill&enlarge=1&format=gif")]),
     {"transform.max_output_pixels_total": "100000000000000", **LIFT_RENDER}, ""),
    ("slowloris (1,100 sockets that send nothing)", slowloris,
     {"server.header_read_timeout_secs": "3600", "server.idle_timeout_secs": "3600"}, ""),
    ("tarpit (64 fetches trickling 1 B/s from one host)", tarpit,
     {"upstream.max_in_flight_per_host": "64", "server.per_client_expensive": "0"}, ""),
]


def measure(work, o, name, attack, extra, cap):
    server = Imgmirror(work, o, extra or {})
    try:
        cpu0 = server.cpu()
        threads, outcome = attack(server, o, cap)
        time.sleep(0.5)
        honest = honest_get(proxy(server, f"http://localhost:{o}/f/photo-1080.jpg", "&w=321"), 30)
        started = time.time()
        for t in threads:
            t.join(max(0.0, cap - (time.time() - started)))
        busy = any(t.is_alive() for t in threads)
        cpu = server.cpu() - cpu0
        rss = server.peak_rss_mb()
        return {"cpu": cpu, "rss": rss, "honest": honest, "outcome": outcome(), "capped": busy}
    finally:
        server.stop()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cap", type=float, default=60, help="seconds an attack may run (default 60)")
    p.add_argument("--only", help="run the attacks whose name contains this")
    args = p.parse_args()
    if not BIN.exists():
        raise SystemExit(f"{BIN} missing: cargo build --release --locked")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    work = Path(tempfile.mkdtemp(prefix="attack-cost-"))
    try:
        files = work / "files"
        files.mkdir()
        sizes = write_files(files)
        srv = origin(files)
        o = srv.server_address[1]
        idle = Imgmirror(work, o, {})
        idle_rss = idle.peak_rss_mb()
        idle.stop()
        print(f"files: {', '.join(f'{k} {v // 1024} KB' for k, v in sizes.items())}", file=sys.stderr)
        print(f"idle server: peak RSS {idle_rss:.0f} MB\n")
        print("| attack | config | server CPU s | peak RSS MB | honest request during it | attack answered |")
        print("|---|---|---:|---:|---|---|")
        for name, attack, lifted, note in ATTACKS:
            if args.only and args.only not in name:
                continue
            for label, extra in [("defended (defaults)", {}), ("limits lifted", lifted)]:
                if extra is None:
                    print(f"| {name} | {label} | – | – | – | {note} |", flush=True)
                    continue
                r = measure(work, o, name, attack, extra, args.cap)
                status, secs = r["honest"]
                capped = f" (still running at {args.cap:.0f} s)" if r["capped"] else ""
                cpu = f"{'≥ ' if r['capped'] else ''}{r['cpu']:.2f}"
                print(f"| {name} | {label} | {cpu} | {r['rss']:.0f} | {status} in {secs:.2f} s "
                      f"| {r['outcome']}{capped} |", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
