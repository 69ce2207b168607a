//! Arbitrary `Accept-Encoding`, `Range`, `If-Range` and conditional
//! header values: the coding negotiation names each coding at most once,
//! the range selection only ever picks bytes inside the file, and the
//! preconditions answer 304, 412 or go on. Never a panic (debug
//! assertions included: the fuzz build has them on).
#![no_main]

use hyper::HeaderMap;
use hyper::StatusCode;
use hyper::header::{
    ACCEPT_ENCODING, HeaderValue, IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE,
    IF_UNMODIFIED_SINCE, RANGE,
};
use libfuzzer_sys::fuzz_target;
use sockit::http::conditional::preconditions;
use sockit::http::encoding::accepted;
use sockit::http::range::{Selection, select};

fuzz_target!(|data: &[u8]| {
    // The first two bytes size the file; the rest, split at NUL, are the
    // header values.
    let Some((size, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let len = u64::from(u16::from_le_bytes(*size));
    let mut values = rest.split(|&b| b == 0);
    let mut headers = HeaderMap::new();
    for name in [
        ACCEPT_ENCODING,
        RANGE,
        IF_RANGE,
        IF_MATCH,
        IF_NONE_MATCH,
        IF_MODIFIED_SINCE,
        IF_UNMODIFIED_SINCE,
    ] {
        if let Some(value) = values.next().and_then(|v| HeaderValue::from_bytes(v).ok()) {
            headers.insert(name, value);
        }
    }

    let codings = accepted(&headers);
    for (i, c) in codings.iter().enumerate() {
        assert!(!codings[..i].contains(c), "{c:?} twice in {codings:?}");
    }

    let etag = "\"5f-2a\"".parse().ok();
    let modified = Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000));
    match preconditions(&headers, etag.as_ref(), modified) {
        None | Some(StatusCode::NOT_MODIFIED | StatusCode::PRECONDITION_FAILED) => {}
        Some(other) => panic!("precondition status {other}"),
    }
    match select(&headers, len, etag.as_ref(), modified) {
        Selection::Whole | Selection::Unsatisfiable => {}
        Selection::One(r) => assert!(r.start() <= r.end() && *r.end() < len, "{r:?} of {len}"),
        Selection::Many(ranges) => {
            assert!(ranges.len() > 1);
            for r in ranges {
                assert!(r.start() <= r.end() && *r.end() < len, "{r:?} of {len}");
            }
        }
    }
});
