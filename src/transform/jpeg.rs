//! JPEG through mozjpeg (libjpeg-turbo underneath): decode with DCT scaling
//! ("shrink-on-load") and encode with the fastest, libjpeg-turbo-compatible settings.
//!
//! Owns the unsafe-adjacent parts: libjpeg reports fatal errors by unwinding, so every call
//! runs inside `catch_unwind`, and an error manager of our own turns the corrupt-data
//! warnings (which libjpeg would paper over with grey) into errors. It does not choose
//! sizes: the caller passes a closure that picks the scale from the header.
//!
//! It enforces the decoder's own limits ([`Budget`]) on what libjpeg parsed, not on what
//! the probe read: the pixel and side limits right after `jpeg_read_header` (before any
//! buffer), the number of scans (a progressive CPU bomb) and the render deadline, the
//! last two from libjpeg's message callback, which it calls for every marker it reads.

use std::cell::Cell;
use std::os::raw::c_int;
use std::panic::{AssertUnwindSafe, catch_unwind};

use image::metadata::Orientation;
use mozjpeg::{ColorSpace, Compress, Decompress, Marker};
use mozjpeg_sys::{
    J_COLOR_SPACE, JTRC_SOS, JWRN_HIT_MARKER, JWRN_HUFF_BAD_CODE, JWRN_JPEG_EOF, JWRN_MUST_RESYNC,
    jpeg_common_struct, jpeg_error_mgr,
};

use super::TransformError;
use super::deadline::Deadline;
use super::limits::check_size;

/// A decoded JPEG: RGB8 pixels as stored (orientation not yet applied).
pub(crate) struct Decoded {
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
    pub orientation: Orientation,
    pub icc: Option<Vec<u8>>,
}

/// What a JPEG header says, given to the scale picker before any pixel is decoded.
pub(crate) struct Header {
    pub width: u32,
    pub height: u32,
    pub orientation: Orientation,
}

/// The payload our error manager unwinds with.
struct LibjpegFailure {
    code: c_int,
    message: String,
}

/// What the decoder enforces on the header *libjpeg* parsed, whatever the probe read
/// (the two can disagree on where the frame header is), and on the work it does.
pub(crate) struct Budget {
    /// Largest width × height libjpeg may decode (`max_pixels`).
    pub max_pixels: u64,
    /// Largest side (`max_input_dim`).
    pub max_dim: u32,
    /// Most scans (SOS markers) libjpeg may read (`max_jpeg_scans`).
    pub max_scans: u32,
    pub deadline: Deadline,
}

/// Rows decoded between two deadline checks: a few milliseconds of work at most.
const ROWS_PER_CHECK: usize = 32;

/// Decodes `src` to RGB8. `pick_scale` sees the header and returns eighths (1, 2, 4 or 8).
/// Returns `Ok(None)` for CMYK/YCCK JPEGs, which libjpeg can't convert to RGB: the caller
/// falls back to another decoder.
///
/// The size libjpeg read from its frame header is checked against `budget` right after
/// `jpeg_read_header`, before `jpeg_start_decompress` allocates the coefficient buffer or
/// we allocate the output; scans are counted and the deadline checked as libjpeg reads
/// markers (see [`message`]) and between groups of rows.
pub(crate) fn decode(
    src: &[u8],
    budget: &Budget,
    pick_scale: impl FnOnce(&Header) -> u8,
) -> Result<Option<Decoded>, TransformError> {
    let _watch = Watch::install(budget);
    guarded(|| {
        let mut dec = Decompress::builder()
            .with_err(error_mgr())
            .with_markers(&[Marker::APP(1), Marker::APP(2)])
            .from_mem(src)
            .map_err(|e| TransformError::Corrupt(format!("jpeg: {e}")))?;
        let (w, h) = dec.size();
        let width = u32::try_from(w).unwrap_or(u32::MAX);
        let height = u32::try_from(h).unwrap_or(u32::MAX);
        // libjpeg's own idea of the size, which the probe may not share.
        check_size(width, height, budget.max_pixels, budget.max_dim)?;
        if matches!(
            dec.color_space(),
            J_COLOR_SPACE::JCS_CMYK | J_COLOR_SPACE::JCS_YCCK
        ) {
            return Ok(None);
        }
        let (orientation, icc) = metadata(&dec);
        let header = Header {
            width,
            height,
            orientation,
        };
        let eighths = pick_scale(&header);
        let eighths = if matches!(eighths, 1 | 2 | 4) {
            dec.scale(eighths);
            u32::from(eighths)
        } else {
            8
        };
        // libjpeg rounds scaled sizes up (jdiv_round_up in jpeg_calc_output_dimensions).
        let scaled = (width.div_ceil(8 / eighths), height.div_ceil(8 / eighths));
        let mut started = dec
            .rgb()
            .map_err(|e| TransformError::Corrupt(format!("jpeg: {e}")))?;
        let (out_w, out_h) = (started.width(), started.height());
        // What we allocate below is libjpeg's output size: it must be what we asked for.
        if out_w > scaled.0 as usize || out_h > scaled.1 as usize {
            return Err(TransformError::Internal(format!(
                "jpeg: libjpeg output {out_w}x{out_h} exceeds the scaled size {scaled:?}"
            )));
        }
        let row = out_w * 3;
        let mut rgb = vec![0u8; row * out_h];
        for rows in rgb.chunks_mut(row * ROWS_PER_CHECK) {
            started
                .read_scanlines_into(rows)
                .map_err(|e| TransformError::Corrupt(format!("jpeg: {e}")))?;
            budget.deadline.check()?;
        }
        started
            .finish()
            .map_err(|e| TransformError::Corrupt(format!("jpeg: {e}")))?;
        Ok(Some(Decoded {
            width: u32::try_from(out_w).map_err(|_| TransformError::Internal("width".into()))?,
            height: u32::try_from(out_h).map_err(|_| TransformError::Internal("height".into()))?,
            rgb,
            orientation: header.orientation,
            icc,
        }))
    })
}

/// EXIF orientation (APP1) and the ICC profile (APP2 chunks, in sequence order).
fn metadata(dec: &Decompress<&[u8]>) -> (Orientation, Option<Vec<u8>>) {
    let mut orientation = Orientation::NoTransforms;
    let mut icc_chunks: Vec<(u8, &[u8])> = Vec::new();
    for m in dec.markers() {
        match m.marker {
            Marker::APP(1) => {
                if let Some(tiff) = m.data.strip_prefix(b"Exif\0\0")
                    && let Some(o) = Orientation::from_exif_chunk(tiff)
                {
                    orientation = o;
                }
            }
            Marker::APP(2) => {
                // ICC profiles are split over APP2 segments: "ICC_PROFILE\0", seq, count.
                if let Some(rest) = m.data.strip_prefix(b"ICC_PROFILE\0")
                    && rest.len() >= 2
                {
                    icc_chunks.push((rest[0], &rest[2..]));
                }
            }
            _ => {}
        }
    }
    icc_chunks.sort_by_key(|c| c.0);
    let icc =
        (!icc_chunks.is_empty()).then(|| icc_chunks.iter().flat_map(|c| c.1).copied().collect());
    (orientation, icc)
}

/// The scan count and deadline of the decode running on this thread, for [`message`].
/// libjpeg's callbacks get only its `cinfo`, and the mozjpeg crate keeps `cinfo` (and so
/// `client_data` and the progress-monitor hook) private: a thread-local is the one place a
/// callback can find them. A decode runs start to end on one thread, so this is exact.
#[derive(Clone, Copy)]
struct Watch {
    scans: u32,
    max_scans: u32,
    deadline: Deadline,
}

thread_local! {
    static WATCH: Cell<Option<Watch>> = const { Cell::new(None) };
}

/// Installs a [`Watch`] for the current thread; removes it when dropped (also on unwind).
struct WatchGuard;

impl Watch {
    fn install(budget: &Budget) -> WatchGuard {
        WATCH.with(|w| {
            w.set(Some(Watch {
                scans: 0,
                max_scans: budget.max_scans,
                deadline: budget.deadline,
            }))
        });
        WatchGuard
    }
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        WATCH.with(|w| w.set(None));
    }
}

/// Called for every libjpeg message (trace ones included): counts scans and checks the
/// deadline. `Some` means the decode must stop with that error.
fn watch_event(code: c_int) -> Option<TransformError> {
    WATCH.with(|cell| {
        let mut watch = cell.get()?;
        // libjpeg traces JTRC_SOS once per SOS marker it reads, whatever the trace level.
        if code == JTRC_SOS as c_int {
            watch.scans += 1;
            cell.set(Some(watch));
            if watch.scans > watch.max_scans {
                return Some(TransformError::TooManyScans {
                    max: watch.max_scans,
                });
            }
        }
        watch.deadline.check().err()
    })
}

/// Encodes RGB8 as a baseline 4:2:0 JPEG with libjpeg-turbo's defaults (standard Huffman
/// tables, no trellis, no progressive): the fastest mode, 0.4 ms for 480×320. mozjpeg's
/// default mode makes files ~17 % smaller but costs 40× the time.
pub(crate) fn encode(
    rgb: &[u8],
    width: u32,
    height: u32,
    quality: u8,
) -> Result<Vec<u8>, TransformError> {
    let encode_err = |reason: String| TransformError::Encode {
        format: "jpeg",
        reason,
    };
    let expected = width as usize * height as usize * 3;
    if rgb.len() != expected {
        return Err(TransformError::Internal(format!(
            "jpeg encode: {} bytes for {width}x{height}",
            rgb.len()
        )));
    }
    guarded(|| {
        let mut c = Compress::new(ColorSpace::JCS_RGB);
        // Must come first: it resets every parameter, quality included.
        c.set_fastest_defaults();
        c.set_size(width as usize, height as usize);
        c.set_quality(f32::from(quality));
        let mut started = c
            .start_compress(Vec::with_capacity(expected / 8))
            .map_err(|e| encode_err(e.to_string()))?;
        started
            .write_scanlines(rgb)
            .map_err(|e| encode_err(e.to_string()))?;
        started.finish().map_err(|e| encode_err(e.to_string()))
    })
}

/// Runs libjpeg code, turning its unwinding errors into `TransformError`s.
fn guarded<T>(f: impl FnOnce() -> Result<T, TransformError>) -> Result<T, TransformError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            // A limit the watch enforced from inside libjpeg (see `message`).
            if let Some(e) = payload.downcast_ref::<TransformError>() {
                return Err(e.clone());
            }
            let message = if let Some(f) = payload.downcast_ref::<LibjpegFailure>() {
                format!("{} (libjpeg code {})", f.message, f.code)
            } else if let Some(s) = payload.downcast_ref::<String>() {
                s.clone()
            } else if let Some(s) = payload.downcast_ref::<&str>() {
                (*s).to_owned()
            } else {
                "libjpeg failed".to_owned()
            };
            Err(TransformError::Corrupt(format!("jpeg: {message}")))
        }
    }
}

fn error_mgr() -> jpeg_error_mgr {
    // SAFETY: jpeg_error_mgr is a plain C struct; jpeg_std_error fills every field.
    let mut err: jpeg_error_mgr = unsafe { std::mem::zeroed() };
    unsafe { mozjpeg_sys::jpeg_std_error(&mut err) };
    err.error_exit = Some(fatal);
    err.emit_message = Some(message);
    err
}

fn failure(cinfo: &mut jpeg_common_struct) -> LibjpegFailure {
    // SAFETY: libjpeg calls us with a valid cinfo whose `err` is our manager.
    let err = unsafe { &*cinfo.err };
    let code = err.msg_code;
    let message = match err.format_message {
        Some(format) => {
            // The binding declares the buffer `&[u8; 80]`, but libjpeg writes into it: call it
            // through the honest type (as the mozjpeg crate itself does).
            type Honest = unsafe extern "C-unwind" fn(&mut jpeg_common_struct, &mut [u8; 80]);
            type Declared = unsafe extern "C-unwind" fn(&mut jpeg_common_struct, &[u8; 80]);
            // SAFETY: same ABI, pointer-sized arguments; only the mutability differs.
            let format = unsafe { std::mem::transmute::<Declared, Honest>(format) };
            let mut buf = [0u8; 80];
            // SAFETY: format_message writes at most JMSG_LENGTH_MAX (80) bytes incl. NUL.
            unsafe { format(cinfo, &mut buf) };
            let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            String::from_utf8_lossy(&buf[..end]).into_owned()
        }
        None => "libjpeg error".to_owned(),
    };
    LibjpegFailure { code, message }
}

extern "C-unwind" fn fatal(cinfo: &mut jpeg_common_struct) {
    // resume_unwind skips the panic hook: bad input is not a bug worth a backtrace.
    std::panic::resume_unwind(Box::new(failure(cinfo)));
}

extern "C-unwind" fn message(cinfo: &mut jpeg_common_struct, level: c_int) {
    // SAFETY: as in `failure`.
    let code = unsafe { (*cinfo.err).msg_code };
    if let Some(refusal) = watch_event(code) {
        // Unwinding out of libjpeg is what `fatal` does too; `guarded` catches it.
        std::panic::resume_unwind(Box::new(refusal));
    }
    if level != -1 {
        return; // trace messages
    }
    // Warnings that mean the entropy-coded data is damaged or missing. Others (extraneous
    // bytes before a marker, odd JFIF versions, bogus ICC) are common in files browsers
    // show fine, so they pass.
    if [
        JWRN_HIT_MARKER,
        JWRN_HUFF_BAD_CODE,
        JWRN_MUST_RESYNC,
        JWRN_JPEG_EOF,
    ]
    .contains(&(code as _))
    {
        std::panic::resume_unwind(Box::new(failure(cinfo)));
    }
}
