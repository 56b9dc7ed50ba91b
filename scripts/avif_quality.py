#!/usr/bin/env python3
"""Quality of the AVIF and WebP outputs of `cargo bench --bench avif_seed -- N OUT_DIR ...`.

For every NN.png in OUT_DIR (imgmirror's lossless render of a seed image: the same decode
and resize, so only the encoder's loss is measured), decodes NN.webp and every
NN.q<Q>s<S>.avif with Pillow (which reads AVIF through libavif since 11.3) and reports the
mean SSIM over 8x8 windows of the luma and the luma PSNR, averaged over the images, as a
Markdown table. Needs `pip install pillow numpy` (a venv is fine).

    python3 scripts/avif_quality.py /tmp/avif
"""

import glob
import os
import re
import sys

import numpy as np
from PIL import Image


def luma(path):
    img = Image.open(path).convert("RGB")
    a = np.asarray(img, dtype=np.float64)
    return 0.299 * a[..., 0] + 0.587 * a[..., 1] + 0.114 * a[..., 2]


def ssim8(x, y):
    """Mean SSIM over non-overlapping 8x8 windows (as src/transform/tests.rs computes it)."""
    h, w = (x.shape[0] // 8) * 8, (x.shape[1] // 8) * 8
    x = x[:h, :w].reshape(h // 8, 8, w // 8, 8).swapaxes(1, 2).reshape(-1, 64)
    y = y[:h, :w].reshape(h // 8, 8, w // 8, 8).swapaxes(1, 2).reshape(-1, 64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = x.mean(1), y.mean(1)
    vx, vy = x.var(1), y.var(1)
    cov = ((x - mx[:, None]) * (y - my[:, None])).mean(1)
    s = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return float(s.mean())


def psnr(x, y):
    mse = float(((x - y) ** 2).mean())
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


def main():
    out = sys.argv[1]
    scores = {}
    for ref in sorted(glob.glob(os.path.join(out, "[0-9][0-9].png"))):
        stem = ref[:-4]
        r = luma(ref)
        candidates = [("WebP q80", stem + ".webp")]
        for avif in sorted(glob.glob(stem + ".q*s*.avif")):
            q, s = re.search(r"\.q(\d+)s(\d+)\.avif$", avif).groups()
            candidates.append((f"AVIF q{q} s{s}", avif))
        for name, path in candidates:
            d = luma(path)
            entry = scores.setdefault(name, [[], [], 0])
            entry[0].append(ssim8(r, d))
            entry[1].append(psnr(r, d))
            entry[2] += os.path.getsize(path)
    print("| output | mean SSIM (8x8, luma) | mean PSNR (luma) | total bytes |")
    print("|---|---|---|---|")
    for name, (ss, ps, total) in scores.items():
        print(f"| {name} | {np.mean(ss):.4f} | {np.mean(ps):.2f} dB | {total} |")


if __name__ == "__main__":
    main()
