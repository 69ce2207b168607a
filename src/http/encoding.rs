//! Content codings (RFC 9110 8.4): which ones a request accepts, which
//! types are worth compressing, and a body compressed as it is sent.
//!
//! The codecs are async-compression's (the crate tower-http compresses
//! with). `Accept-Encoding` is read here because no maintained crate
//! exposes a parser for it: the `headers` crate ships its `AcceptEncoding`
//! disabled, tower-http keeps its own private, and the one fork that has
//! it panics on a malformed q-value. The grammar is small (a list of
//! tokens with an optional weight), and [`accepted`] never fails: a
//! malformed element is skipped, as an unknown coding is.

use async_compression::Level;
use async_compression::tokio::bufread::{BrotliEncoder, GzipEncoder, ZstdEncoder};
use http_body_util::{BodyDataStream, BodyExt};
use hyper::HeaderMap;
use hyper::header::ACCEPT_ENCODING;
use tokio_util::io::StreamReader;

use super::body::{Body, ReadBody};

/// The codings sockit sends, in the order it prefers them when a client
/// accepts several equally: brotli and zstd make smaller files than gzip
/// at the levels below, for about the same CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// `br`.
    Brotli,
    /// `zstd`.
    Zstd,
    /// `gzip` (and its old alias `x-gzip`).
    Gzip,
}

impl Coding {
    /// Every coding, most preferred first.
    pub const ALL: [Coding; 3] = [Coding::Brotli, Coding::Zstd, Coding::Gzip];

    /// The token in `Accept-Encoding` and `Content-Encoding`.
    pub fn token(self) -> &'static str {
        match self {
            Coding::Brotli => "br",
            Coding::Zstd => "zstd",
            Coding::Gzip => "gzip",
        }
    }

    /// The extension of a precompressed sibling: `app.js.br` next to
    /// `app.js`.
    pub fn extension(self) -> &'static str {
        match self {
            Coding::Brotli => "br",
            Coding::Zstd => "zst",
            Coding::Gzip => "gz",
        }
    }

    fn from_token(token: &str) -> Option<Coding> {
        Coding::ALL
            .into_iter()
            .find(|c| token.eq_ignore_ascii_case(c.token()))
            .or_else(|| token.eq_ignore_ascii_case("x-gzip").then_some(Coding::Gzip))
    }

    fn index(self) -> usize {
        match self {
            Coding::Brotli => 0,
            Coding::Zstd => 1,
            Coding::Gzip => 2,
        }
    }
}

/// The codings a request accepts (a weight above zero, named or through
/// `*`), best first: by the client's weight, then by [`Coding::ALL`]'s
/// order. Empty without `Accept-Encoding`, which asks for the content as
/// it is.
pub fn accepted(headers: &HeaderMap) -> Vec<Coding> {
    // Weights in thousandths; None: not named.
    let mut named: [Option<u16>; 3] = [None; 3];
    let mut star: Option<u16> = None;
    let elements = headers
        .get_all(ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','));
    for element in elements {
        let Some((token, weight)) = parse_element(element) else {
            continue;
        };
        if token == "*" {
            star = Some(weight);
        } else if let Some(coding) = Coding::from_token(token) {
            named[coding.index()] = Some(weight);
        }
    }
    let mut ranked: Vec<(Coding, u16)> = Coding::ALL
        .into_iter()
        .filter_map(|c| {
            let weight = named[c.index()].or(star)?;
            (weight > 0).then_some((c, weight))
        })
        .collect();
    // Stable: equal weights keep the preference order.
    ranked.sort_by_key(|&(_, weight)| std::cmp::Reverse(weight));
    ranked.into_iter().map(|(c, _)| c).collect()
}

/// One list element, `token [ OWS ";" OWS "q=" qvalue ]`: the token and
/// its weight in thousandths (1000 without one). `None` for an empty or
/// malformed element.
fn parse_element(element: &str) -> Option<(&str, u16)> {
    let mut parts = element.split(';');
    let token = parts.next()?.trim();
    if token.is_empty() || !token.bytes().all(is_token_byte) {
        return None;
    }
    let mut weight = 1000;
    for param in parts {
        let (name, value) = param.split_once('=')?;
        if name.trim().eq_ignore_ascii_case("q") {
            weight = parse_qvalue(value.trim())?;
        }
    }
    Some((token, weight))
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`, in
/// thousandths.
fn parse_qvalue(text: &str) -> Option<u16> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = fraction
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(3)
        .fold(0u16, |n, digit| n * 10 + u16::from(digit - b'0'));
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// RFC 9110 5.6.2's tchar.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Whether a type (a `Content-Type` value) is worth compressing: text and
/// the structured formats that are text inside. Images, audio, video,
/// archives and fonts in WOFF are compressed already; compressing them
/// again costs CPU and saves nothing.
pub fn worth_compressing(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    let Some((kind, sub)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("text")
        || sub.ends_with("+json")
        || sub.ends_with("+xml")
        || matches!(
            (kind, sub),
            (
                "application",
                "javascript"
                    | "json"
                    | "xml"
                    | "wasm"
                    | "x-javascript"
                    | "x-sh"
                    | "x-tar"
                    | "rtf"
                    | "postscript"
                    | "vnd.ms-fontobject"
                    | "x-font-ttf"
            ) | ("image", "svg+xml" | "bmp" | "x-icon" | "vnd.microsoft.icon")
                | ("font", "ttf" | "otf")
        )
}

/// `body` compressed with `coding` as it is sent, in chunks of at most
/// 32 KiB, so a large file is compressed a piece at a
/// time between other connections' work, never held whole.
pub fn compress(body: Body, coding: Coding) -> Body {
    let source = StreamReader::new(BodyDataStream::new(body));
    match coding {
        Coding::Brotli => ReadBody::new(
            BrotliEncoder::with_quality(source, Level::Precise(BROTLI_QUALITY)),
            COMPRESSED_CHUNK,
        )
        .boxed_unsync(),
        Coding::Zstd => ReadBody::new(
            ZstdEncoder::with_quality(source, Level::Precise(ZSTD_LEVEL)),
            COMPRESSED_CHUNK,
        )
        .boxed_unsync(),
        Coding::Gzip => ReadBody::new(
            GzipEncoder::with_quality(source, Level::Precise(GZIP_LEVEL)),
            COMPRESSED_CHUNK,
        )
        .boxed_unsync(),
    }
}

/// The largest piece of compressed output produced at once.
const COMPRESSED_CHUNK: usize = 32 * 1024;

/// Brotli's quality 11 (its default) is for precompressing: on the fly it
/// runs at a few MB/s. 4 is faster than gzip's default and compresses
/// better.
const BROTLI_QUALITY: i32 = 4;
/// zstd's own default.
const ZSTD_LEVEL: i32 = 3;
/// zlib's own default, what `gzip` and most servers use.
const GZIP_LEVEL: i32 = 6;

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn ranked(values: &[&str]) -> Vec<&'static str> {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
        }
        accepted(&headers).into_iter().map(Coding::token).collect()
    }

    #[test]
    fn browsers_get_the_preferred_order() {
        assert_eq!(ranked(&["gzip, deflate, br, zstd"]), ["br", "zstd", "gzip"]);
        assert_eq!(ranked(&["deflate, gzip"]), ["gzip"]);
        assert!(ranked(&[]).is_empty());
        assert!(ranked(&["identity"]).is_empty());
    }

    #[test]
    fn weights_rank_and_zero_refuses() {
        assert_eq!(
            ranked(&["br;q=0.5, gzip;q=0.8, zstd"]),
            ["zstd", "gzip", "br"]
        );
        assert_eq!(ranked(&["gzip; Q=0.2 , br ; q=1.000"]), ["br", "gzip"]);
        assert_eq!(ranked(&["br;q=0, gzip"]), ["gzip"]);
        assert_eq!(ranked(&["*"]), ["br", "zstd", "gzip"]);
        assert_eq!(ranked(&["*;q=0.1, gzip"]), ["gzip", "br", "zstd"]);
        assert_eq!(ranked(&["*, br;q=0"]), ["zstd", "gzip"]);
        assert_eq!(ranked(&["GZIP", "x-gzip;q=0.5"]), ["gzip"]);
        assert_eq!(ranked(&["gzip", "br"]), ["br", "gzip"]);
    }

    #[test]
    fn malformed_elements_are_skipped() {
        for bad in [
            "gzip;q=abc",
            "gzip;q=1.5",
            "gzip;q=2",
            "gzip;q=0.1234",
            "gzip;q=-0",
            "gzip;q",
            "gzip;q=",
            "g zip",
            "gzip;;",
            "\"gzip\"",
        ] {
            assert_eq!(ranked(&[&format!("{bad}, br")]), ["br"], "{bad:?}");
        }
        assert_eq!(ranked(&[",,, ,gzip,"]), ["gzip"]);
    }

    #[test]
    fn qvalues_follow_the_grammar() {
        assert_eq!(parse_qvalue("0"), Some(0));
        assert_eq!(parse_qvalue("0."), Some(0));
        assert_eq!(parse_qvalue("0.5"), Some(500));
        assert_eq!(parse_qvalue("0.001"), Some(1));
        assert_eq!(parse_qvalue("1"), Some(1000));
        assert_eq!(parse_qvalue("1.000"), Some(1000));
        assert_eq!(parse_qvalue("1.001"), None);
        assert_eq!(parse_qvalue("00.5"), None);
        assert_eq!(parse_qvalue(""), None);
    }

    #[test]
    fn text_compresses_and_media_does_not() {
        let worth = |path: &str| {
            let mime = mime_guess::from_path(path).first_raw();
            worth_compressing(mime.unwrap_or("application/octet-stream"))
        };
        for yes in [
            "a.html", "a.css", "a.js", "a.json", "a.svg", "a.txt", "a.xml", "a.wasm", "a.csv",
        ] {
            assert!(worth(yes), "{yes}");
        }
        for no in [
            "a.png", "a.jpg", "a.gz", "a.zip", "a.mp4", "a.woff2", "a.bin", "a.br",
        ] {
            assert!(!worth(no), "{no}");
        }
    }
}
