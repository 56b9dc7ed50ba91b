#!/usr/bin/env python3
"""Times imgmirror's transform pipeline beside Pillow and libvips (pyvips) on the same
images, in process, in the same run, one core each, and prints a Markdown table.

    pip install pillow pyvips          # PyPI
    apt-get install -y libvips42       # Debian: the libvips that pyvips loads (or libvips-dev)
    python3 scripts/compare.py [--iterations 100] [--rounds 3] [--core 1]

Every measurement runs in its own process under `/usr/bin/time -v taskset -c CORE`, so each
tool gets the same single core and its peak RSS is recorded. Each process decodes, resizes
and encodes one fixture ITERATIONS times after 3 warm-ups and reports the median wall time
and the CPU time per image. Rounds interleave the tools to spread machine noise; the table
shows the median over rounds. imgmirror runs through `benches/pipeline_timer.rs`
(release build, `cargo bench --bench pipeline_timer`).

The script also runs itself as the Pillow / pyvips worker (`--worker NAME ...`).
"""
import argparse
import io
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures"

# (label, fixture, width, output format, imgmirror query, goal: max ratio vs reference, reference)
CASES = [
    ("photo-1920.jpg → 480 JPEG q80", "photo-1920.jpg", 480, "jpeg", "w=480&q=80", 0.7, "min"),
    ("photo-4000.jpg → 480 JPEG q80", "photo-4000.jpg", 480, "jpeg", "w=480&q=80", 1.0, "vips"),
    # cat-alpha.png is 451 px wide: 480 is an enlargement for all three tools alike.
    ("cat-alpha.png → 480 WebP q80", "cat-alpha.png", 480, "webp", "w=480&q=80&enlarge=1", 1.0, "vips"),
]


def worker(tool, path, width, fmt, iterations):
    data = Path(path).read_bytes()
    if tool == "pillow":
        from PIL import Image

        def once():
            im = Image.open(io.BytesIO(data))
            th = max(1, round(im.height * width / im.width))
            if fmt == "jpeg":
                # Reduced-scale JPEG decode (DCT scaling), as thumbor and Image.thumbnail do.
                im.draft("RGB", (width, th))
            im = im.resize((width, th), Image.Resampling.LANCZOS)
            buf = io.BytesIO()
            if fmt == "jpeg":
                im.convert("RGB").save(buf, "JPEG", quality=80)
            else:
                im.save(buf, "WEBP", quality=80, method=4)
            return buf.getvalue(), im.size
    elif tool == "pyvips":
        import pyvips

        pyvips.cache_set_max(0)  # no operation cache: every iteration does the full work

        def once():
            # thumbnail: shrink-on-load + the libvips resize, the imgproxy hot path.
            im = pyvips.Image.thumbnail_buffer(data, width, height=10_000_000)
            out = im.write_to_buffer(".jpg[Q=80]" if fmt == "jpeg" else ".webp[Q=80]")
            return out, (im.width, im.height)
    else:
        raise SystemExit(f"unknown worker {tool}")
    for _ in range(3):
        out, size = once()
    walls = []
    cpu0 = time.process_time()
    for _ in range(iterations):
        t = time.perf_counter()
        out, size = once()
        walls.append((time.perf_counter() - t) * 1000)
    cpu_ms = (time.process_time() - cpu0) * 1000 / iterations
    walls.sort()
    print(json.dumps({"tool": tool, "median_ms": walls[len(walls) // 2], "best_ms": walls[0],
                      "cpu_ms": cpu_ms, "bytes": len(out), "width": size[0], "height": size[1]}))


def timer_binary():
    out = subprocess.run(
        ["cargo", "bench", "--bench", "pipeline_timer", "--no-run", "--message-format=json"],
        cwd=ROOT, check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg["target"]["name"] == "pipeline_timer" \
                and msg.get("executable"):
            return msg["executable"]
    raise SystemExit("could not find the pipeline_timer executable")


def measure(cmd, core, env=None):
    full = ["/usr/bin/time", "-v", "taskset", "-c", str(core)] + cmd
    p = subprocess.run(full, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{p.stderr[-2000:]}")
    result = json.loads(p.stdout.strip().splitlines()[-1])
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr)
    result["rss_mb"] = int(rss.group(1)) / 1024 if rss else float("nan")
    user = re.search(r"User time \(seconds\): ([\d.]+)", p.stderr)
    system = re.search(r"System time \(seconds\): ([\d.]+)", p.stderr)
    global OWN_CPU_S
    OWN_CPU_S += float(user.group(1)) + float(system.group(1))
    return result


OWN_CPU_S = 0.0


def busy_seconds():
    """CPU seconds spent by the whole machine (all cores, not idle/iowait), from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--core", type=int, default=1)
    ap.add_argument("--worker", nargs=5, metavar=("TOOL", "FILE", "WIDTH", "FORMAT", "N"))
    args = ap.parse_args()
    if args.worker:
        tool, path, width, fmt, n = args.worker
        return worker(tool, path, int(width), fmt, int(n))

    import PIL
    import pyvips
    timer = timer_binary()
    env = dict(os.environ, VIPS_CONCURRENCY="1", RAYON_NUM_THREADS="1")
    rows = []
    busy0, wall0 = busy_seconds(), time.monotonic()
    for label, fixture, width, fmt, query, goal, ref in CASES:
        path = str(FIX / fixture)
        # imgmirror gets the same iteration count; GIF-free cases are all fast enough.
        cmds = {
            "imgmirror": [timer, path, query, fmt, str(args.iterations)],
            "pillow": [sys.executable, __file__, "--worker", "pillow", path, str(width), fmt, str(args.iterations)],
            "pyvips": [sys.executable, __file__, "--worker", "pyvips", path, str(width), fmt, str(args.iterations)],
        }
        runs = {k: [] for k in cmds}
        for _ in range(args.rounds):
            for tool, cmd in cmds.items():
                runs[tool].append(measure(cmd, args.core, env))
        summary = {}
        for tool, rs in runs.items():
            summary[tool] = {
                "cpu_ms": statistics.median(r["cpu_ms"] for r in rs),
                "median_ms": statistics.median(r["median_ms"] for r in rs),
                "best_ms": min(r["best_ms"] for r in rs),
                "rss_mb": max(r["rss_mb"] for r in rs),
                "bytes": rs[-1]["bytes"],
                "size": f'{rs[-1]["width"]}x{rs[-1]["height"]}',
            }
        rows.append((label, goal, ref, summary))
        print(f"{label}: " + json.dumps(summary), file=sys.stderr)

    other = (busy_seconds() - busy0 - OWN_CPU_S) / (time.monotonic() - wall0)
    print(f"Other load during the run (CPU used by other processes): {max(other, 0):.2f} cores.\n")
    print(f"Pillow {PIL.__version__}, libvips {pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)}"
          f" (pyvips {pyvips.__version__}); {args.iterations} images per process, {args.rounds} rounds,"
          f" `taskset -c {args.core}`; CPU ms per image (median of rounds), peak RSS of the process.\n")
    print("| case | imgmirror | Pillow (draft+resize+save) | pyvips thumbnail | ratio vs Pillow | ratio vs libvips | goal | met |")
    print("|---|---|---|---|---|---|---|---|")
    for label, goal, ref, s in rows:
        im, pil, vips = s["imgmirror"], s["pillow"], s["pyvips"]
        r_pil = im["cpu_ms"] / pil["cpu_ms"]
        r_vips = im["cpu_ms"] / vips["cpu_ms"]
        reference = min(pil["cpu_ms"], vips["cpu_ms"]) if ref == "min" else vips["cpu_ms"]
        ratio = im["cpu_ms"] / reference
        goal_text = f"≤ {goal} × {'faster reference' if ref == 'min' else 'libvips'}"
        cell = lambda d: f'{d["cpu_ms"]:.2f} ms, {d["rss_mb"]:.0f} MB, {d["bytes"] // 1024} KB {d["size"]}'
        print(f"| {label} | {cell(im)} | {cell(pil)} | {cell(vips)} | {r_pil:.2f} | {r_vips:.2f} "
              f"| {goal_text} | {'yes' if ratio <= goal else 'no'} ({ratio:.2f}) |")


if __name__ == "__main__":
    main()
