//! Conditional requests (RFC 9110 13): a file's validators, and what
//! `If-Match`, `If-None-Match`, `If-Modified-Since` and
//! `If-Unmodified-Since` make of its answer, with the values parsed by
//! the `headers` crate.

use std::fs::Metadata;
use std::time::SystemTime;

use headers::{
    ETag, Header, HeaderMapExt, IfMatch, IfModifiedSince, IfNoneMatch, IfUnmodifiedSince,
    LastModified,
};
use hyper::header::{HeaderValue, LAST_MODIFIED};
use hyper::{HeaderMap, StatusCode};

/// One representation's validators (RFC 9110 8.8): compared with the
/// preconditions and `If-Range`, and sent as `ETag` and `Last-Modified`.
/// Worked out once per version of a cached file (formatting the tag and
/// the date was a tenth of a small file's answer), per answer otherwise.
#[derive(Debug, Clone)]
pub struct Validators {
    /// The strong entity tag.
    pub etag: Option<ETag>,
    /// The file's modification time.
    pub modified: Option<SystemTime>,
    /// The same as an HTTP date, ready to send.
    last_modified: Option<HeaderValue>,
}

impl Validators {
    /// A strong validator from the file's size and modification time (as
    /// nginx makes its ETags): it changes whenever the content can have.
    /// `suffix` tells the representations of one file apart (RFC 9110
    /// 8.8.3: a gzip body is not byte-for-byte the file, so it needs its
    /// own tag).
    pub fn of(meta: &Metadata, suffix: &str) -> Validators {
        let modified = meta.modified().ok();
        let nanos = modified
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        Validators {
            // Always a valid entity tag: hex digits and a dash in quotes.
            etag: format!("\"{nanos:x}-{:x}{suffix}\"", meta.len())
                .parse()
                .ok(),
            modified,
            last_modified: modified.and_then(|m| {
                let mut values = Vec::with_capacity(1);
                LastModified::from(m).encode(&mut values);
                values.pop()
            }),
        }
    }

    /// Adds `ETag` and `Last-Modified` to an answer's headers.
    pub fn insert_into(&self, headers: &mut HeaderMap) {
        if let Some(etag) = &self.etag {
            headers.typed_insert(etag.clone());
        }
        if let Some(value) = &self.last_modified {
            headers.insert(LAST_MODIFIED, value.clone());
        }
    }
}

/// The conditional headers in RFC 9110 13.2.2's order: a failed
/// If-Match (or, without it, If-Unmodified-Since) is 412; a matching
/// If-None-Match (or, without it, an If-Modified-Since the file is not
/// newer than) is 304. `None`: go on and send the file.
pub fn preconditions(
    headers: &hyper::HeaderMap,
    etag: Option<&ETag>,
    modified: Option<SystemTime>,
) -> Option<StatusCode> {
    if let Some(if_match) = typed::<IfMatch>(headers) {
        if !etag.is_some_and(|etag| if_match.precondition_passes(etag)) {
            return Some(StatusCode::PRECONDITION_FAILED);
        }
    } else if let (Some(since), Some(m)) = (typed::<IfUnmodifiedSince>(headers), modified)
        && !since.precondition_passes(m)
    {
        return Some(StatusCode::PRECONDITION_FAILED);
    }
    let not_modified = match (typed::<IfNoneMatch>(headers), etag) {
        (Some(inm), Some(etag)) => !inm.precondition_passes(etag),
        (Some(_), None) => false,
        (None, _) => match (typed::<IfModifiedSince>(headers), modified) {
            (Some(ims), Some(m)) => !ims.is_modified(m),
            _ => false,
        },
    };
    not_modified.then_some(StatusCode::NOT_MODIFIED)
}

/// A typed header, or `None` when absent or malformed. An entity tag
/// holding a space, a tab or another byte RFC 9110 8.8.3 does not allow
/// (`"5f- a"`) counts as malformed here, before `headers` sees it: that
/// crate checks such bytes only with a debug assertion.
pub fn typed<H: Header>(headers: &HeaderMap) -> Option<H> {
    let sane = headers
        .get_all(H::name())
        .iter()
        .all(|value| quoted_bytes_are_etagc(value.as_bytes()));
    if sane { headers.typed_get::<H>() } else { None }
}

/// Whether every byte between double quotes is an `etagc`: `!`, `#` to
/// `~`, or not ASCII.
fn quoted_bytes_are_etagc(value: &[u8]) -> bool {
    let mut quoted = false;
    value.iter().all(|&b| {
        if b == b'"' {
            quoted = !quoted;
            true
        } else {
            !quoted || b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::{HeaderValue, IF_NONE_MATCH};

    #[test]
    fn a_tag_with_a_space_inside_is_malformed_not_a_panic() {
        let mut h = HeaderMap::new();
        h.insert(IF_NONE_MATCH, HeaderValue::from_static("\"5f- a\""));
        assert!(typed::<IfNoneMatch>(&h).is_none());
        h.insert(
            IF_NONE_MATCH,
            HeaderValue::from_static("\"a\", W/\"b\"\t, \"c\""),
        );
        assert!(typed::<IfNoneMatch>(&h).is_some());
        let etag: ETag = "\"5f\"".parse().unwrap();
        h.insert(IF_NONE_MATCH, HeaderValue::from_static("\"5f\""));
        assert_eq!(
            preconditions(&h, Some(&etag), None),
            Some(StatusCode::NOT_MODIFIED)
        );
    }
}
