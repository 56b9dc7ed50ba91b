//! Output geometry: from the (oriented) source size and a [`Spec`], the exact output size,
//! the canvas, the source crop and the smallest decode size that still gives full quality.
//!
//! Owns the fit-mode and no-enlarge rules, as pure arithmetic (table-tested). It knows
//! nothing of pixels or codecs.

use super::spec::{Fit, Spec};

/// What to produce from a source of a given size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Plan {
    /// Size of the resized picture.
    pub out: (u32, u32),
    /// Size of the output image: `out`, except for `fit=contain`, which pads to the box.
    pub canvas: (u32, u32),
    /// Region of the source to keep (`fit=cover`), as fractions of its size: x, y, w, h.
    pub crop: Option<[f64; 4]>,
    /// Size of the whole source at the output scale. A reduced-size decode (JPEG DCT
    /// scaling) must keep at least this many pixels on each axis to lose no detail.
    pub min_decode: (u32, u32),
}

fn scaled(len: u32, num: u32, den: u32) -> u32 {
    // Rounded, and never 0: a 4000×10 strip resized to 100 wide stays 1 px high.
    let v = (u64::from(len) * u64::from(num) * 2 + u64::from(den)) / (u64::from(den) * 2);
    u32::try_from(v.max(1)).unwrap_or(u32::MAX)
}

/// Computes the plan for a source of `sw`×`sh` (already oriented).
pub(crate) fn plan(sw: u32, sh: u32, spec: &Spec) -> Plan {
    let same = |out: (u32, u32)| Plan {
        out,
        canvas: out,
        crop: None,
        min_decode: out,
    };
    let src = (sw, sh);
    match (spec.width, spec.height) {
        (None, None) => same(src),
        (Some(w), None) => {
            if !spec.enlarge && w >= sw {
                same(src)
            } else {
                same((w, scaled(sh, w, sw)))
            }
        }
        (None, Some(h)) => {
            if !spec.enlarge && h >= sh {
                same(src)
            } else {
                same((scaled(sw, h, sh), h))
            }
        }
        (Some(w), Some(h)) => {
            // Compare w/sw with h/sh without division: which side limits the fit.
            let width_limits = u64::from(w) * u64::from(sh) <= u64::from(h) * u64::from(sw);
            match spec.fit {
                Fit::Inside | Fit::Contain => {
                    let mut out = if width_limits {
                        (w, scaled(sh, w, sw))
                    } else {
                        (scaled(sw, h, sh), h)
                    };
                    if !spec.enlarge && out.0 > sw {
                        out = src;
                    }
                    let canvas = if spec.fit == Fit::Contain {
                        (w, h)
                    } else {
                        out
                    };
                    Plan {
                        out,
                        canvas,
                        crop: None,
                        min_decode: out,
                    }
                }
                Fit::Cover => plan_cover(src, (w, h), spec.enlarge, width_limits),
                Fit::Fill => {
                    if !spec.enlarge && (w > sw || h > sh) {
                        // Shrink the box (keeping its shape) until neither axis grows.
                        let out = if u64::from(sw) * u64::from(h) <= u64::from(sh) * u64::from(w) {
                            (sw, scaled(h, sw, w))
                        } else {
                            (scaled(w, sh, h), sh)
                        };
                        same(out)
                    } else {
                        same((w, h))
                    }
                }
            }
        }
    }
}

/// `fit=cover`: the largest box of the target's aspect ratio inside the source, centred,
/// scaled to the target (or kept 1:1 when the source is smaller and `enlarge` is off).
fn plan_cover(src: (u32, u32), (w, h): (u32, u32), enlarge: bool, width_limits: bool) -> Plan {
    let (sw, sh) = src;
    // The largest box of the target's aspect ratio inside the source, centred:
    // full height when the target is relatively narrower, else full width.
    let (cw, ch) = if width_limits {
        (scaled(sh, w, h).min(sw), sh)
    } else {
        (sw, scaled(sw, h, w).min(sh))
    };
    let crop = [
        f64::from(sw - cw) / 2.0 / f64::from(sw),
        f64::from(sh - ch) / 2.0 / f64::from(sh),
        f64::from(cw) / f64::from(sw),
        f64::from(ch) / f64::from(sh),
    ];
    let shrinks = if width_limits { h <= sh } else { w <= sw };
    if enlarge || shrinks {
        // The crop box scales to w×h; the whole source scales alike.
        let whole = if width_limits {
            (scaled(sw, h, sh), h)
        } else {
            (w, scaled(sh, w, sw))
        };
        Plan {
            out: (w, h),
            canvas: (w, h),
            crop: Some(crop),
            min_decode: (whole.0.max(w), whole.1.max(h)),
        }
    } else {
        // The source is smaller than the box: keep the box's shape, at 1:1.
        Plan {
            out: (cw, ch),
            canvas: (cw, ch),
            crop: Some(crop),
            min_decode: src,
        }
    }
}

/// JPEG DCT scaling: the smallest of 1/8, 1/4, 1/2 (as eighths) that keeps the decoded
/// image at least `margin × need` on both axes, else 8/8. Only these three use
/// libjpeg-turbo's SIMD IDCTs; 3/8 and friends are slower than decoding at 1/2.
///
/// The margin is the speed/quality knob ([`Settings::fast_jpeg_shrink`](super::Settings)):
/// 1 is Pillow's `draft` (decode straight to about the output size), 2 is libvips's (leave
/// a 2× Lanczos step). 1/8 always needs 2×: it keeps only each block's DC coefficient, a
/// box filter that aliases visibly (SSIM 0.90 against a Lanczos reference at 1×, 0.97 at 2×).
pub(crate) fn jpeg_scale(src: (u32, u32), need: (u32, u32), margin: u32) -> u8 {
    for eighths in [1u8, 2, 4] {
        let w = src.0.div_ceil(8 / u32::from(eighths));
        let h = src.1.div_ceil(8 / u32::from(eighths));
        let m = if eighths == 1 { 2 } else { margin };
        if u64::from(w) >= u64::from(need.0) * u64::from(m)
            && u64::from(h) >= u64::from(need.1) * u64::from(m)
        {
            return eighths;
        }
    }
    8
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::Settings;

    fn spec(q: &str) -> Spec {
        let pairs: Vec<(&str, &str)> = q.split('&').filter_map(|p| p.split_once('=')).collect();
        Spec::from_query(pairs, &Settings::default())
            .unwrap()
            .unwrap()
    }

    #[test]
    fn output_sizes_per_fit_mode() {
        // (source, query, out, canvas)
        type Size = (u32, u32);
        let cases: &[(Size, &str, Size, Size)] = &[
            ((1920, 1200), "w=480", (480, 300), (480, 300)),
            ((1920, 1200), "h=300", (480, 300), (480, 300)),
            ((1920, 1200), "w=480&h=319", (480, 300), (480, 300)),
            ((1920, 1200), "w=480&h=200", (320, 200), (320, 200)),
            (
                (1920, 1200),
                "w=480&h=319&fit=cover",
                (480, 319),
                (480, 319),
            ),
            (
                (1920, 1200),
                "w=300&h=300&fit=cover",
                (300, 300),
                (300, 300),
            ),
            (
                (1920, 1200),
                "w=480&h=319&fit=contain",
                (480, 300),
                (480, 319),
            ),
            ((1920, 1200), "w=480&h=480&fit=fill", (480, 480), (480, 480)),
            ((1920, 1200), "w=240&dpr=2", (480, 300), (480, 300)),
            (
                (1920, 1200),
                "w=240&h=160&dpr=2&fit=cover",
                (480, 320),
                (480, 320),
            ),
            // No enlarging without enlarge=1.
            ((480, 319), "w=1000", (480, 319), (480, 319)),
            ((480, 319), "h=1000", (480, 319), (480, 319)),
            ((480, 319), "w=1000&h=1000", (480, 319), (480, 319)),
            (
                (480, 319),
                "w=1000&h=1000&fit=contain",
                (480, 319),
                (1000, 1000),
            ),
            ((480, 300), "w=960&h=300&fit=cover", (480, 150), (480, 150)),
            ((480, 300), "w=960&h=960&fit=fill", (300, 300), (300, 300)),
            ((480, 319), "w=960&enlarge=1", (960, 638), (960, 638)),
            (
                (480, 300),
                "w=960&h=300&fit=cover&enlarge=1",
                (960, 300),
                (960, 300),
            ),
            (
                (480, 300),
                "w=960&h=960&fit=fill&enlarge=1",
                (960, 960),
                (960, 960),
            ),
            // Degenerate strips never reach 0.
            ((4000, 10), "w=100", (100, 1), (100, 1)),
        ];
        for &(src, q, out, canvas) in cases {
            let p = plan(src.0, src.1, &spec(q));
            assert_eq!((p.out, p.canvas), (out, canvas), "{src:?} {q}");
            assert!(p.min_decode.0 >= p.out.0.min(src.0), "{src:?} {q} {p:?}");
        }
    }

    #[test]
    fn cover_crops_around_the_centre() {
        let p = plan(1920, 1200, &spec("w=300&h=300&fit=cover"));
        let [x, y, w, h] = p.crop.unwrap();
        assert_eq!(
            (x * 1920.0, y * 1200.0, w * 1920.0, h * 1200.0),
            (360.0, 0.0, 1200.0, 1200.0)
        );
        assert_eq!(p.min_decode, (480, 300));
        let p = plan(1200, 1920, &spec("w=300&h=100&fit=cover"));
        let [x, y, w, h] = p.crop.unwrap();
        assert_eq!(
            (x * 1200.0, y * 1920.0, w * 1200.0, h * 1920.0),
            (0.0, 760.0, 1200.0, 400.0)
        );
        assert_eq!(p.min_decode, (300, 480));
    }

    #[test]
    fn jpeg_scale_keeps_enough_pixels() {
        assert_eq!(jpeg_scale((1920, 1200), (480, 300), 1), 2);
        assert_eq!(jpeg_scale((1920, 1200), (480, 300), 2), 4);
        assert_eq!(jpeg_scale((1920, 1200), (481, 300), 1), 4);
        assert_eq!(jpeg_scale((4000, 2500), (480, 300), 1), 2);
        assert_eq!(jpeg_scale((4000, 2500), (250, 150), 1), 1);
        assert_eq!(jpeg_scale((1920, 1200), (1920, 1200), 1), 8);
        assert_eq!(jpeg_scale((1000, 1000), (126, 10), 1), 2);
    }
}
