//! Range requests (RFC 9110 14): which bytes of a file a GET asks for.
//!
//! The `Range` value is parsed by `http-range-header` (strictly: a
//! malformed or abusive header is ignored, as RFC 9110 allows, and the
//! whole file is sent), `If-Range` by `headers`. This module only decides;
//! the responder reads the bytes.

use std::ops::RangeInclusive;
use std::time::SystemTime;

use headers::{ETag, IfRange, LastModified};
use http_range_header::RangeUnsatisfiableError;
use hyper::HeaderMap;
use hyper::header::{IF_RANGE, RANGE};

/// What to send of a file of a given length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// All of it, 200 (no Range, an ignored one, or a stale If-Range).
    Whole,
    /// One range, 206 with `Content-Range`.
    One(RangeInclusive<u64>),
    /// Several, non-overlapping, in the order asked: 206
    /// `multipart/byteranges`.
    Many(Vec<RangeInclusive<u64>>),
    /// None of the ranges is inside the file: 416 with `Content-Range:
    /// bytes */LEN`.
    Unsatisfiable,
}

/// Decides what a request's `Range` and `If-Range` select of a file of
/// `len` bytes with the given validators.
pub fn select(
    headers: &HeaderMap,
    len: u64,
    etag: Option<&ETag>,
    modified: Option<SystemTime>,
) -> Selection {
    let Some(value) = headers.get(RANGE).and_then(|v| v.to_str().ok()) else {
        return Selection::Whole;
    };
    // A Range made for another version of the file is not for this one.
    // A malformed If-Range cannot match anything: the whole file too.
    if headers.contains_key(IF_RANGE) {
        let Some(if_range) = super::conditional::typed::<IfRange>(headers) else {
            return Selection::Whole;
        };
        let last_modified = modified.map(LastModified::from);
        if if_range.is_modified(etag, last_modified.as_ref()) {
            return Selection::Whole;
        }
    }
    let parsed = match http_range_header::parse_range_header(value) {
        Ok(parsed) => parsed,
        Err(_) => return Selection::Whole,
    };
    match parsed.validate(len) {
        Ok(ranges) => match ranges.len() {
            0 => Selection::Whole,
            1 => Selection::One(ranges[0].clone()),
            _ => Selection::Many(ranges),
        },
        Err(RangeUnsatisfiableError::Unsatisfiable) => Selection::Unsatisfiable,
        // Overlapping or otherwise intolerable ranges: ignored.
        Err(_) => Selection::Whole,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn with(range: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(RANGE, HeaderValue::from_str(range).unwrap());
        h
    }

    #[test]
    fn ranges_by_the_rfc() {
        let sel = |r: &str| select(&with(r), 100, None, None);
        assert_eq!(sel("bytes=0-9"), Selection::One(0..=9));
        assert_eq!(sel("bytes=90-"), Selection::One(90..=99));
        assert_eq!(sel("bytes=-10"), Selection::One(90..=99));
        assert_eq!(sel("bytes=-1000"), Selection::One(0..=99));
        assert_eq!(sel("bytes=95-200"), Selection::One(95..=99));
        assert_eq!(sel("bytes=0-1,5-6"), Selection::Many(vec![0..=1, 5..=6]));
        assert_eq!(sel("bytes=100-200"), Selection::Unsatisfiable);
        // Two overlapping ranges are served as asked (RFC 9110 allows it).
        assert_eq!(
            sel("bytes=0-10,5-20"),
            Selection::Many(vec![0..=10, 5..=20])
        );
        // Malformed: ignored, the whole file.
        for bad in ["bytes=abc", "bytes=5-1", "items=0-1", "bytes=--3", "bytes="] {
            assert_eq!(sel(bad), Selection::Whole, "{bad}");
        }
        assert_eq!(select(&HeaderMap::new(), 100, None, None), Selection::Whole);
    }

    #[test]
    fn if_range_must_match_the_current_file() {
        let etag: ETag = "\"v1\"".parse().unwrap();
        let mut h = with("bytes=0-0");
        h.insert("if-range", HeaderValue::from_static("\"v1\""));
        assert_eq!(select(&h, 10, Some(&etag), None), Selection::One(0..=0));
        h.insert("if-range", HeaderValue::from_static("\"v0\""));
        assert_eq!(select(&h, 10, Some(&etag), None), Selection::Whole);
        h.insert("if-range", HeaderValue::from_static("\"v 1\""));
        assert_eq!(select(&h, 10, Some(&etag), None), Selection::Whole);
    }
}
