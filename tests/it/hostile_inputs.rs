//! Hostile images end to end (issue 8, item 10): each case names the attack, asserts the
//! refusal (status and code), that an honest render sent at the same moment is served, and
//! that the attack left nothing in the store (`support::attack`). Pixel bombs in every
//! format, a GIF of 10,000 frames, a JPEG/HTML polyglot, and upstreams that lie about
//! Content-Type. The decoder-level defences themselves are unit-tested in
//! `src/transform/hostile_tests.rs`; this file proves the server puts them in front of
//! every client.

use std::time::{Duration, Instant};

use crate::support::attack::{assert_nothing_stored, during_honest};
use crate::support::origin::POLYGLOT_HTML;
use crate::support::{client, enc, fixture, setup};

/// A GIF89a with a `w`×`h` logical screen and `frames` frames of `fw`×`fh` at its corner,
/// each with a 3-code LZW stream (CLEAR, 0, EOI): one pixel of data whatever the frame's
/// size (complete for a 1×1 frame; a larger one is cut short, which only its decode sees).
fn gif((w, h): (u16, u16), (fw, fh): (u16, u16), frames: usize) -> Vec<u8> {
    let mut v = b"GIF89a".to_vec();
    v.extend(w.to_le_bytes());
    v.extend(h.to_le_bytes());
    v.extend([0x80, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF]); // 2-colour global table
    for _ in 0..frames {
        // Graphic control extension: 10 ms delay, so it is an animation.
        v.extend([0x21, 0xF9, 0x04, 0x00, 0x01, 0x00, 0x00, 0x00]);
        v.push(0x2C);
        for n in [0, 0, fw, fh] {
            v.extend(n.to_le_bytes());
        }
        v.extend([0x00, 0x02, 0x02, 0x44, 0x01, 0x00]);
    }
    v.push(0x3B);
    v
}

/// A RIFF WebP around one chunk.
fn riff(fourcc: &[u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut chunk = fourcc.to_vec();
    chunk.extend(u32::try_from(payload.len()).unwrap().to_le_bytes());
    chunk.extend(payload);
    if payload.len() % 2 == 1 {
        chunk.push(0);
    }
    let mut out = b"RIFF".to_vec();
    out.extend(u32::try_from(4 + chunk.len()).unwrap().to_le_bytes());
    out.extend(b"WEBP");
    out.extend(chunk);
    out
}

/// Lossless WebP (VP8L) whose header declares `w`×`h`, followed by junk entropy data.
fn vp8l_bomb(w: u32, h: u32) -> Vec<u8> {
    let bits: u32 = (w - 1) | ((h - 1) << 14); // alpha 0, version 0
    let mut payload = vec![0x2F];
    payload.extend(bits.to_le_bytes());
    payload.extend([0u8; 64]);
    riff(b"VP8L", &payload)
}

/// Lossy WebP: a real 64×64 VP8 key frame from libwebp with its frame header patched to
/// declare `w`×`h`.
fn vp8_bomb(w: u16, h: u16) -> Vec<u8> {
    let rgb = vec![120u8; 64 * 64 * 3];
    let mut webp = webp::Encoder::from_rgb(&rgb, 64, 64).encode(80.0).to_vec();
    // RIFF(12) + "VP8 "(4) + size(4) + frame tag(3) + start code(3) = offset 26.
    assert_eq!(&webp[23..26], [0x9D, 0x01, 0x2A]);
    webp[26..28].copy_from_slice(&w.to_le_bytes());
    webp[28..30].copy_from_slice(&h.to_le_bytes());
    webp
}

/// Pixel bombs: a few hundred bytes whose header declares billions of pixels, in each format
/// imgmirror decodes. A resize is refused with 422 `too-many-pixels` from the header, before
/// any pixel buffer exists, while an honest render goes through; the bomb never becomes a
/// stored variant, and is refused again on a second try (nothing half-made was cached).
/// The bomb's own bytes are a well-formed file of a few hundred bytes, and are mirrored like
/// any original (the worker form serves originals as they are; storing them costs their
/// size): what must never exist is a decode of them.
#[tokio::test]
async fn pixel_bombs_in_every_format_are_refused() {
    let (origin, mut server, _dir) = setup().await;
    let bombs = [
        ("bomb.jpg", fixture("bomb-50000.jpg"), "image/jpeg"),
        ("bomb.png", fixture("bomb-50000.png"), "image/png"),
        (
            "bomb.gif",
            gif((20_000, 20_000), (20_000, 20_000), 2),
            "image/gif",
        ),
        (
            "bomb-lossless.webp",
            vp8l_bomb(16_384, 16_384),
            "image/webp",
        ),
        ("bomb-lossy.webp", vp8_bomb(16_383, 16_383), "image/webp"),
    ];
    let mut mirrored = Vec::new();
    for (name, bytes, content_type) in bombs {
        origin.set_bytes(name, bytes, content_type, None);
        let upstream = origin.url(&format!("/bytes/{name}"));
        let attack = server.url(&format!("/?url={}&w=100", enc(&upstream)));
        let started = Instant::now();
        let answer = during_honest(&server, &origin, &attack).await;
        answer.assert_refused(422, "too-many-pixels", name);
        assert!(started.elapsed() < Duration::from_secs(10), "{name}");
        let again = client().get(&attack).send().await.unwrap();
        assert_eq!(again.status(), 422, "{name}, second try");
        mirrored.push(upstream);
    }
    assert_eq!(server.files("variants"), 5, "only the honest renders");
    assert_nothing_stored(&mut server, &[], &mirrored).await;
}

/// A GIF of 10,000 frames on a 500×500 screen (230 KB: each frame is 23 bytes, one pixel
/// drawn on the screen): rendering it animated at 400 px would be 1.6 billion output pixels. Over `transform.max_frames` it is never
/// animated: `format=gif` answers its first frame as a still image, at once.
#[tokio::test]
async fn a_gif_of_10000_frames_is_not_rendered_as_an_animation() {
    let (origin, mut server, _dir) = setup().await;
    let frames = gif((500, 500), (1, 1), 10_000);
    assert!(frames.len() < 256 * 1024);
    origin.set_bytes("frames.gif", frames, "image/gif", None);
    let upstream = origin.url("/bytes/frames.gif");
    let started = Instant::now();
    let attack = server.url(&format!("/?url={}&w=400&format=gif", enc(&upstream)));
    let answer = during_honest(&server, &origin, &attack).await;
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(answer.headers["content-type"], "image/gif");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    use image::AnimationDecoder;
    let decoder = image::codecs::gif::GifDecoder::new(std::io::Cursor::new(&answer.body)).unwrap();
    assert_eq!(decoder.into_frames().count(), 1, "rendered as an animation");
    // The original is an image and is mirrored; the one variant is the still.
    assert_nothing_stored(&mut server, &[], &[upstream]).await;
}

/// A polyglot: a real JPEG with an HTML page (a script) appended, labelled `text/html` by
/// its upstream. It is an image, so it is served, but only as one: `Content-Type:
/// image/jpeg` from its magic number (never the upstream's label), `nosniff`, and the
/// sandbox CSP, so no browser runs it as a page; a resized variant drops the HTML.
#[tokio::test]
async fn a_jpeg_html_polyglot_is_served_only_as_an_image() {
    let (origin, mut server, _dir) = setup().await;
    let upstream = origin.url("/polyglot/photo-480.jpg");
    for attack in [
        server.proxy(&upstream),
        server.url(&format!("/?url={}&w=100", enc(&upstream))),
    ] {
        let answer = during_honest(&server, &origin, &attack).await;
        assert_eq!(answer.status, 200, "{attack}");
        assert_eq!(answer.headers["content-type"], "image/jpeg", "{attack}");
        assert_eq!(answer.headers["x-content-type-options"], "nosniff");
        let csp = answer.headers["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("default-src 'none'") && csp.contains("sandbox"),
            "{csp}"
        );
        assert!(
            answer
                .headers
                .get("content-disposition")
                .is_none_or(|v| { !v.to_str().unwrap_or("").contains(".htm") })
        );
        if attack.contains("w=100") {
            assert!(
                !answer.body.windows(7).any(|w| w == b"<script"),
                "variant kept the HTML"
            );
        } else {
            assert!(answer.body.ends_with(POLYGLOT_HTML.as_bytes()));
        }
    }
    assert_nothing_stored(&mut server, &[], &[upstream]).await;
}

/// Upstreams that lie about Content-Type: an HTML page labelled `image/jpeg` is refused
/// with 415 `not-an-image` (the bytes decide, not the label) and not stored; a real JPEG
/// labelled `text/html` is served as `image/jpeg`.
#[tokio::test]
async fn content_type_lies_are_decided_by_the_bytes() {
    let (origin, mut server, _dir) = setup().await;
    let html = origin.url("/html-as-jpeg/a.jpg");
    let answer = during_honest(&server, &origin, &server.proxy(&html)).await;
    answer.assert_refused(415, "not-an-image", "html labelled image/jpeg");
    let again = client().get(server.proxy(&html)).send().await.unwrap();
    assert_eq!(again.status(), 415, "second try");

    let jpeg = origin.url("/lie/photo-480.jpg");
    let answer = during_honest(&server, &origin, &server.proxy(&jpeg)).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.headers["content-type"], "image/jpeg");
    assert_eq!(answer.body.as_ref(), fixture("photo-480.jpg").as_slice());
    assert_nothing_stored(&mut server, &[html], &[jpeg]).await;
}
