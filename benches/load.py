#!/usr/bin/env python3
"""The load benchmark behind benches/load.sh (run that: it checks the tools and builds).

Starts, on 127.0.0.1 and free ports, in a temporary directory:
  - origin:  nginx serving tests/fixtures; /u/<token>/<file> appends the request URI after
             the image's last byte (`add_after_body`), so every cold request has new bytes
             (content addressing would otherwise dedupe them into a hash, not a render);
             /qupost/img/... serves the seed article's 20 images;
  - imgmirror "mem" (default config), "disk" (cache.memory_bytes = 0) and "rss"
    (cache.memory_bytes = 32 MiB, scenario E), release build;
  - nginx `proxy_cache` (config/nginx-proxy-cache.conf, ports and paths rewritten) in front
    of imgmirror "mem", plus /resize/ = `image_filter resize 480 -` on the origin (cold);
  - thumbor (PyPI; 2 processes, file storage and result storage).
and measures, each round running every server in turn (order rotated per round):
  A memory hit, B disk hit, C cold render (new URL and new bytes per request, 32
  connections), C1 the same on one connection; then D a burst of 100 identical cold
  requests (fetches and renders from /metrics), E peak RSS during C at 4000 px, F
  `imgmirror prefetch` of the seed article. Server CPU per request is the server
  processes' utime+stime delta (/proc/<pid>/stat) over the requests wrk completed.
"""
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures"
ROUNDS = int(os.environ.get("LOAD_ROUNDS", "3"))
SECONDS = int(os.environ.get("LOAD_SECONDS", "5"))
ONE_SECONDS = int(os.environ.get("LOAD_ONE_SECONDS", "3"))
CONNS = int(os.environ.get("LOAD_CONNECTIONS", "32"))
RSS_SECONDS = int(os.environ.get("LOAD_RSS_SECONDS", "10"))
ONLY = set(os.environ.get("LOAD_ONLY", "A,B,C,D,E,F").split(","))
BIN = os.environ["IMGMIRROR_BIN"]
THUMBOR = os.environ["LOAD_THUMBOR"]
TICK = os.sysconf("SC_CLK_TCK")
RSS_CACHE = 32 * 1024 * 1024
PHOTO = "photo-1920.jpg"
BIG = "photo-4000.jpg"

procs = []


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd, log, **kw):
    p = subprocess.Popen(cmd, stdout=open(log, "ab"), stderr=subprocess.STDOUT,
                         start_new_session=True, **kw)
    procs.append(p)
    return p


def stop_all():
    for p in procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)


def wait_http(port, path="/", timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            get(port, path)
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing answers on 127.0.0.1:{port}{path}")


def get(port, path, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request("GET", path, headers=headers or {})
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, dict(r.getheaders()), body


def tree(pid):
    """pid and its descendants (nginx workers, thumbor's forked processes)."""
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def cpu_seconds(pids):
    total = 0
    for p in pids:
        try:
            f = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(f[11]) + int(f[12])
        except OSError:
            pass
    return total / TICK


def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# ---------------------------------------------------------------- setup

def nginx_origin(tmp, port):
    root = tmp / "origin"
    (root / "qupost/img/2022/01/31").mkdir(parents=True)
    for f in FIX.iterdir():
        if f.is_file():
            shutil.copy(f, root / f.name)
    seed = (FIX / "seed-article.md").read_text()
    # The seed article's images: the same deterministic pick as tests/it/support/origin.rs.
    files = ["photo-480.jpg", "astronaut-512.jpg", "photo-1080.jpg"]
    for name in sorted(set(re.findall(r"qupost/img/2022/01/31/([0-9a-f]+\.jpeg)", seed))):
        target = files[sum(name.encode()) % 3]
        shutil.copy(FIX / target, root / "qupost/img/2022/01/31" / name)
    conf = tmp / "origin.conf"
    conf.write_text(f"""
worker_processes 1;
daemon off;
pid {tmp}/origin.pid;
error_log {tmp}/origin-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    types {{ image/jpeg jpg jpeg; image/png png; image/gif gif; }}
    server {{
        listen 127.0.0.1:{port} reuseport;
        root {root};
        # /u/<token>/<file>: the file, then the request URI: new bytes per token.
        location /u/ {{
            rewrite ^/u/[^/]+/(.*)$ /$1 break;
            add_after_body /tail;
            addition_types image/jpeg;
        }}
        location = /tail {{ internal; return 200 "$request_uri"; }}
    }}
}}
""")
    return ["nginx", "-c", str(conf), "-e", str(tmp / "origin-error.log")]


def imgmirror_config(tmp, name, port, origin, memory_bytes, extra=""):
    cache = tmp / f"cache-{name}"
    conf = tmp / f"imgmirror-{name}.toml"
    mem = "" if memory_bytes is None else f"memory_bytes = {memory_bytes}\n"
    mem += extra
    # wrk's 32 connections are one client (127.0.0.1): the per-client limit on fetches and
    # renders (server.per_client_expensive, 8) would answer most cold requests with 429.
    # Behind a CDN or nginx each client is told apart through X-Forwarded-For instead.
    conf.write_text(f"""
[server]
listen = "127.0.0.1:{port}"
per_client_expensive = 0
[cache]
dir = "{cache}"
{mem}
[upstream]
allowed_ports = [80, 443, {origin}]
allow_cidrs = ["127.0.0.1/32"]
resolve = {{ "static.1sapp.com:80" = "127.0.0.1:{origin}" }}
""")
    return conf


def nginx_proxy(tmp, port, imgmirror, origin):
    text = (ROOT / "config/nginx-proxy-cache.conf").read_text()
    text = text.replace("/var/cache/nginx/imgmirror", str(tmp / "nginx-cache"))
    text = text.replace("server 127.0.0.1:8080;", f"server 127.0.0.1:{imgmirror};")
    text = text.replace("listen 80;", f"listen 127.0.0.1:{port};")
    assert f"127.0.0.1:{port}" in text and str(tmp) in text, "nginx-proxy-cache.conf changed shape"
    # Cold renders for nginx: image_filter over the unique-bytes origin.
    text = text.replace("    # Operational and admin endpoints", f"""    location /resize/ {{
        proxy_pass http://127.0.0.1:{origin}/u/;
        image_filter resize 480 -;
        image_filter_jpeg_quality 80;
        image_filter_buffer 32M;
    }}

    # Operational and admin endpoints""", 1)
    (tmp / "proxy-cache.conf").write_text(text)
    conf = tmp / "nginx.conf"
    conf.write_text(f"""
load_module /usr/lib/nginx/modules/ngx_http_image_filter_module.so;
worker_processes auto;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log {tmp}/nginx-access.log;
    include {tmp}/proxy-cache.conf;
}}
""")
    return ["nginx", "-c", str(conf), "-e", str(tmp / "nginx-error.log")]


def thumbor_cmd(tmp, port):
    conf = tmp / "thumbor.conf"
    conf.write_text(f"""
LOADER = 'thumbor.loaders.http_loader'
STORAGE = 'thumbor.storages.file_storage'
FILE_STORAGE_ROOT_PATH = '{tmp}/thumbor-storage'
RESULT_STORAGE = 'thumbor.result_storages.file_storage'
RESULT_STORAGE_FILE_STORAGE_ROOT_PATH = '{tmp}/thumbor-results'
RESULT_STORAGE_STORES_UNSAFE = True
QUALITY = 80
ALLOW_UNSAFE_URL = True
""")
    return [THUMBOR, "-i", "127.0.0.1", "-p", str(port), "-c", str(conf),
            "-l", "error", "--processes", "2"]


# ---------------------------------------------------------------- wrk

LUA = """
local threads = 0
function setup(thread) threads = threads + 1; thread:set("tid", threads) end
function init(args) prefix = args[1] .. "-" .. tid; n = 0; pattern = args[2] end
function request()
    n = n + 1
    local path = pattern:gsub("TOKEN", prefix .. "-" .. n)
    return wrk.format("GET", path)
end
"""


def wrk(port, path, pids, seconds, conns, unique=None, lua=None):
    threads = min(2, conns)
    cmd = ["wrk", "-t", str(threads), "-c", str(conns), "-d", f"{seconds}s", "--latency",
           "--timeout", "30s"]
    if unique:
        cmd += ["-s", lua, f"http://127.0.0.1:{port}", "--", unique, path]
    else:
        cmd += [f"http://127.0.0.1:{port}{path}"]
    before = cpu_seconds(pids)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    cpu = cpu_seconds(pids) - before
    reqs = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errs = re.search(r"Socket errors: (.*)", out)

    def pct(p):
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\b", out, re.M)
        v = float(m.group(1))
        return v / 1000 if m.group(2) == "us" else v * 1000 if m.group(2) == "s" else v

    return {"rps": rps, "p50": pct(50), "p99": pct(99), "cpu_ms": 1000 * cpu / max(reqs, 1),
            "reqs": reqs, "bad": int(bad.group(1)) if bad else 0,
            "errors": errs.group(1) if errs else ""}


def metrics(port):
    _, _, body = get(port, "/metrics")
    fetches = renders = 0.0
    for line in body.decode().splitlines():
        if line.startswith("imgmirror_upstream_fetches_total"):
            fetches += float(line.rsplit(" ", 1)[1])
        elif line.startswith("imgmirror_renders_total"):
            renders += float(line.rsplit(" ", 1)[1])
    return fetches, renders


def enc(s):
    return s.replace(":", "%3A").replace("/", "%2F")


# ---------------------------------------------------------------- main

TMP = Path(tempfile.mkdtemp(prefix="imgmirror-load-"))
# nginx's workers run as an unprivileged user when started as root: they must read it.
TMP.chmod(0o755)


def main():
    tmp = TMP
    lua = tmp / "unique.lua"
    lua.write_text(LUA)
    P = {k: free_port() for k in ["origin", "mem", "nohot", "disk", "rss", "nginx", "thumbor"]}
    O = P["origin"]
    start(nginx_origin(tmp, O), tmp / "origin.log")
    srv = {}
    for name, mem, extra in [("mem", None, ""), ("nohot", None, "hot_bytes = 0\n"),
                             ("disk", 0, ""),
                             ("rss", RSS_CACHE, os.environ.get("LOAD_RSS_EXTRA", ""))]:
        conf = imgmirror_config(tmp, name, P[name], O, mem, extra)
        srv[name] = start([BIN, "serve", "--config", str(conf)], tmp / f"imgmirror-{name}.log",
                          env={**os.environ, "RUST_LOG": "info"})
    srv["nginx"] = start(nginx_proxy(tmp, P["nginx"], P["mem"], O), tmp / "nginx.log")
    srv["thumbor"] = start(thumbor_cmd(tmp, P["thumbor"]), tmp / "thumbor.log")
    for k in P:
        wait_http(P[k], "/healthz" if k in ("mem", "nohot", "disk", "rss") else "/")
    time.sleep(1)
    pids = {k: tree(p.pid) for k, p in srv.items()}

    up = f"http://127.0.0.1:{O}/{PHOTO}"
    hit = {
        "imgmirror": (P["mem"], f"/?url={enc(up)}&w=480", pids["mem"]),
        "nginx": (P["nginx"], f"/?url={enc(up)}&w=480", pids["nginx"]),
        "thumbor": (P["thumbor"], f"/unsafe/480x0/127.0.0.1:{O}/{PHOTO}", pids["thumbor"]),
        # The same binary with cache.hot_bytes = 0: the full request path on every hit.
        "imgmirror-nohot": (P["nohot"], f"/?url={enc(up)}&w=480", pids["nohot"]),
    }
    disk = {
        "imgmirror": (P["disk"], f"/?url={enc(up)}&w=480", pids["disk"]),
        "nginx": hit["nginx"],
    }
    cold_pat = {
        "imgmirror": (P["mem"], "/?url=" + enc(f"http://127.0.0.1:{O}/u/TOKEN/{PHOTO}") + "&w=480", pids["mem"]),
        "nginx": (P["nginx"], f"/resize/TOKEN/{PHOTO}", pids["nginx"]),
        "thumbor": (P["thumbor"], f"/unsafe/480x0/127.0.0.1:{O}/u/TOKEN/{PHOTO}", pids["thumbor"]),
    }
    # Sanity: the unique-bytes trick works and every server answers an image.
    s1, _, b1 = get(O, f"/u/a/{PHOTO}")
    s2, _, b2 = get(O, f"/u/b/{PHOTO}")
    assert s1 == s2 == 200 and b1 != b2 and b1[:2] == b"\xff\xd8", "origin: unique bytes"
    for table in (hit, disk):
        for name, (port, path, _) in table.items():
            for _ in range(3):  # warm: fetched, rendered, cached
                status, h, body = get(port, path)
            assert status == 200 and body[:2] == b"\xff\xd8", (name, path, status, body[:200])
    s, h, _ = get(P["mem"], hit["imgmirror"][1])
    assert h.get("x-imgmirror-source") == "memory", h
    s, h, _ = get(P["disk"], disk["imgmirror"][1])
    assert h.get("x-imgmirror-source") == "disk", h
    s, h, _ = get(P["nginx"], hit["nginx"][1])
    assert h.get("X-Cache") == "HIT", h
    for name, (port, pat, _) in cold_pat.items():
        status, _, body = get(port, pat.replace("TOKEN", f"check{random.random()}"))
        assert status == 200 and body[:2] == b"\xff\xd8", (name, status, body[:200])

    results = {}  # (scenario, server) -> [run dicts]
    nonce = f"{os.getpid()}x{random.randrange(10**9)}"
    order = ["imgmirror", "nginx", "thumbor", "imgmirror-nohot"]
    for r in range(ROUNDS):
        rot = order[r % 4:] + order[:r % 4]
        for sc, table, secs, conns, uniq in [("A", hit, SECONDS, CONNS, False),
                                             ("B", disk, SECONDS, CONNS, False),
                                             ("C", cold_pat, SECONDS, CONNS, True),
                                             ("C1", cold_pat, ONE_SECONDS, 1, True)]:
            if sc[0] not in ONLY:
                continue
            for name in rot:
                if name not in table:
                    continue
                port, path, ps = table[name]
                res = wrk(port, path, ps, secs, conns,
                          unique=f"{nonce}{sc}{r}{name}" if uniq else None, lua=str(lua))
                results.setdefault((sc, name), []).append(res)
                print(f"round {r + 1} {sc:2} {name:9} {res['rps']:9.1f} req/s  p50 {res['p50']:7.2f} ms"
                      f"  p99 {res['p99']:7.2f} ms  cpu {res['cpu_ms']:7.3f} ms/req"
                      f"{'  non-2xx ' + str(res['bad']) if res['bad'] else ''} {res['errors']}",
                      file=sys.stderr, flush=True)
        if "D" in ONLY:
            results.setdefault(("D", "imgmirror"), []).append(burst(P["mem"], O, f"{nonce}D{r}"))
        if "F" in ONLY:
            results.setdefault(("F", "imgmirror"), []).append(prefetch(tmp, O, r))
    if "E" in ONLY:
        results[("E", "imgmirror")] = [peak_rss(P["rss"], srv["rss"].pid, O, nonce, lua)]
    report(results)


def burst(port, origin, token):
    """100 identical cold requests at once: one fetch and one render."""
    f0, r0 = metrics(port)
    path = "/?url=" + enc(f"http://127.0.0.1:{origin}/u/{token}/{PHOTO}") + "&w=480"
    barrier = threading.Barrier(100)
    statuses = []

    def one():
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        c.connect()
        barrier.wait()
        c.request("GET", path)
        r = c.getresponse()
        r.read()
        statuses.append(r.status)

    ts = [threading.Thread(target=one) for _ in range(100)]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    wall = time.monotonic() - t0
    f1, r1 = metrics(port)
    d = {"fetches": f1 - f0, "renders": r1 - r0, "ok": statuses.count(200), "wall_ms": wall * 1000}
    print(f"D burst: {d}", file=sys.stderr, flush=True)
    return d


def peak_rss(port, pid, origin, nonce, lua):
    """Cold 4000 px renders on CONNS connections; VmRSS sampled every 10 ms."""
    stop = threading.Event()
    peak = [rss_kib(pid)]
    base = peak[0]

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_kib(pid))
            time.sleep(0.01)

    t = threading.Thread(target=sample)
    t.start()
    pat = "/?url=" + enc(f"http://127.0.0.1:{origin}/u/TOKEN/{BIG}") + "&w=480"
    res = wrk(port, pat, [pid], RSS_SECONDS, CONNS, unique=f"{nonce}E", lua=str(lua))
    stop.set()
    t.join()
    res.update({"rss_mib": peak[0] / 1024, "idle_mib": base / 1024,
                "minus_cache_mib": peak[0] / 1024 - RSS_CACHE / 2**20})
    print(f"E peak RSS: {res}", file=sys.stderr, flush=True)
    return res


def prefetch(tmp, origin, r):
    """`imgmirror prefetch` of the seed article into a fresh local store."""
    conf = imgmirror_config(tmp, f"prefetch{r}", free_port(), origin, None)
    out = tmp / f"prefetch{r}.json"
    t0 = time.monotonic()
    with open(out, "wb") as o:
        p = subprocess.Popen([BIN, "prefetch", "--config", str(conf), "--json",
                              str(FIX / "seed-article.md")], stdout=o, stderr=subprocess.DEVNULL)
        _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    res = {"wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "status": p.returncode,
           "out": out.read_bytes()}
    print(f"F prefetch: wall {wall:.2f} s, CPU {res['cpu_s']:.2f} s, exit {p.returncode}",
          file=sys.stderr, flush=True)
    return res


def med(runs, key):
    return statistics.median(x[key] for x in runs)


def report(results):
    R = results
    lines = ["| scenario | imgmirror | nginx `proxy_cache` | thumbor | ratio (imgmirror ÷ reference) |",
             "|---|---|---|---|---|"]

    def cell(sc, name):
        runs = R.get((sc, name))
        if not runs:
            return "–"
        return (f"{med(runs, 'rps'):,.0f} req/s, p50 {med(runs, 'p50'):.2f} ms, "
                f"p99 {med(runs, 'p99'):.2f} ms, CPU {med(runs, 'cpu_ms'):.3f} ms/req")

    def ratio(sc, ref):
        a, b = R.get((sc, "imgmirror")), R.get((sc, ref))
        if not a or not b:
            return "–"
        return (f"vs {ref}: req/s {med(a, 'rps') / med(b, 'rps'):.2f}×, CPU/req "
                f"{med(a, 'cpu_ms') / med(b, 'cpu_ms'):.2f}×, p99 {med(a, 'p99') / med(b, 'p99'):.2f}×")

    names = {"A": "A memory hit (480 px JPEG)", "B": "B disk hit (imgmirror memory_bytes = 0)",
             "C": f"C cold render, new URL + bytes, {CONNS} conns",
             "C1": "C cold render, one connection"}
    for sc, ref in [("A", "nginx"), ("B", "nginx"), ("C", "thumbor"), ("C1", "thumbor")]:
        if (sc, "imgmirror") in R:
            extra = ""
            if sc == "A" and ("A", "imgmirror-nohot") in R:
                a, b = R[("A", "imgmirror")], R[("A", "imgmirror-nohot")]
                extra = (f"; `hot_bytes = 0` (full path every hit): {cell('A', 'imgmirror-nohot')},"
                         f" req/s {med(b, 'rps') / med(R[('A', 'nginx')], 'rps'):.2f}× nginx")
            if sc == "C" and ("C", "nginx") in R:
                extra = "; nginx is `image_filter` (no cache)"
            if sc == "C1" and ("C1", "thumbor") in R:
                a, b = R[("C1", "imgmirror")], R[("C1", "thumbor")]
                extra = f"; p50 {med(a, 'p50') / med(b, 'p50'):.2f}×"
            lines.append(f"| {names[sc]} | {cell(sc, 'imgmirror')} | {cell(sc, 'nginx')} | "
                         f"{cell(sc, 'thumbor')} | {ratio(sc, ref)}{extra} |")
    if ("D", "imgmirror") in R:
        d = R[("D", "imgmirror")]
        lines.append("| D burst of 100 identical cold requests | " + "; ".join(
            f"{x['fetches']:.0f} fetch, {x['renders']:.0f} render, {x['ok']}/100 ok, {x['wall_ms']:.0f} ms"
            for x in d) + " | | | must be 1 fetch and 1 render |")
    if ("E", "imgmirror") in R:
        e = R[("E", "imgmirror")][0]
        lines.append(f"| E peak RSS, cold 4000 px → 480, {CONNS} conns, memory cache {RSS_CACHE >> 20} MiB"
                     f" | {e['rss_mib']:.0f} MiB (idle {e['idle_mib']:.0f}); minus the cache "
                     f"{e['minus_cache_mib']:.0f} MiB; {e['rps']:.1f} req/s | | | goal ≤ 96 MiB |")
    if ("F", "imgmirror") in R:
        f = R[("F", "imgmirror")]
        walls = [x["wall_s"] for x in f]
        cpu = statistics.median(x["cpu_s"] for x in f)
        try:
            rep = json.loads(f[-1]["out"])
            n = sum(len(i.get("variants", [])) for i in rep.get("images", []))
        except (ValueError, AttributeError):
            n = "?"
        lines.append(f"| F prefetch of the seed article (local store, fresh) | wall "
                     f"{statistics.median(walls):.2f} s, CPU {cpu:.2f} s (medians of rounds), "
                     f"{n} variants, exit {f[-1]['status']} | | | |")
    print("\n".join(lines))


if __name__ == "__main__":
    try:
        main()
    finally:
        stop_all()
        if os.environ.get("LOAD_KEEP"):
            print(f"kept {TMP}", file=sys.stderr)
        else:
            shutil.rmtree(TMP, ignore_errors=True)
