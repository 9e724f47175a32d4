//! Request paths in the one canonical form that rules are matched against and that the
//! upstream is sent, so no upstream can read a path differently from the rule that passed it.
//!
//! The model (after Envoy's `normalize_path` + `merge_slashes`, stricter by default):
//! - percent-decoding happens once: `%61dmin` is `admin`; hex case does not matter;
//! - what an upstream could resolve differently is refused (400): `.`/`..` segments in any
//!   encoding (also `. .`, overlong UTF-8 `%c0%ae`), `;` (matrix parameters: Tomcat and Jetty
//!   drop `;...` and then resolve `..;`), backslashes, control bytes and `%00`, invalid UTF-8,
//!   double encoding (`%252e`), and characters that Unicode compatibility normalisation or
//!   Windows best-fit mapping turn into `/`, `\`, `.`, `;`, `%`, `?` or `#`;
//! - `%2F` follows [`EscapedSlashes`]: refused by default, or turned into `/`, or kept;
//! - runs of `/` collapse into one.
//!
//! The forwarded form re-encodes only what a path cannot carry literally, so decoding it
//! again gives the matched form: canonicalising a canonical path changes nothing.

use std::borrow::Cow;
use std::fmt;

/// What to do with `%2F` (and `%2f`) inside a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EscapedSlashes {
    /// Refuse the request: WSGI, old Go muxes and many frameworks decode `%2F` to `/`.
    #[default]
    Reject,
    /// Decode it into a `/`: the rule and the upstream both see a separator.
    Unescape,
    /// Keep `%2F` as data inside the segment, for upstreams known to do the same.
    Keep,
}

/// Why a request path cannot be matched safely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// A `.` or `..` segment (or one of dots and spaces only), in any encoding.
    DotSegment,
    /// Malformed percent-encoding, or not UTF-8 once decoded (overlong forms included).
    BadEncoding,
    /// `%2F` while `routing.escaped_slashes = "reject"`.
    EscapedSlash,
    /// A backslash, literal or `%5C`.
    Backslash,
    /// A `;`, literal or `%3B`.
    Semicolon,
    /// A control character, `%00` included.
    Control,
    /// A `%` that decodes into another escape (`%252e`).
    DoubleEncoding,
    /// A character that normalisation maps to a path delimiter (`／`, `．`, `∕`, ...).
    Confusable,
    /// Not an origin-form path.
    NotAbsolute,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::DotSegment => "the request path contains `.` or `..` segments",
            PathError::BadEncoding => "the request path is not validly percent-encoded UTF-8",
            PathError::EscapedSlash => "the request path contains an encoded slash (%2F)",
            PathError::Backslash => "the request path contains a backslash",
            PathError::Semicolon => "the request path contains `;` (path parameters are not accepted)",
            PathError::Control => "the request path contains a control character",
            PathError::DoubleEncoding => "the request path is percent-encoded twice",
            PathError::Confusable => "the request path contains a character that can stand for a delimiter",
            PathError::NotAbsolute => "the request path does not start with `/`",
        })
    }
}

/// A path in canonical form: `matched` is percent-decoded (what rules compare against),
/// `forward` is the same path encoded for the request line. Both borrow the request's own
/// path when it needed no change, which is the common case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalPath<'a> {
    matched: Cow<'a, str>,
    forward: Cow<'a, str>,
}

impl<'a> CanonicalPath<'a> {
    /// The decoded path rules are matched against.
    pub fn matched(&self) -> &str {
        &self.matched
    }

    /// The path to put on the request line sent upstream.
    pub fn forward(&self) -> &str {
        &self.forward
    }

    /// Whether the upstream would get exactly the path the client sent.
    pub fn is_unchanged(&self) -> bool {
        matches!(self.forward, Cow::Borrowed(_))
    }

    pub fn into_owned(self) -> CanonicalPath<'static> {
        CanonicalPath { matched: self.matched.into_owned().into(), forward: self.forward.into_owned().into() }
    }
}

/// Characters a path segment may carry literally (RFC 3986 `pchar` without `%` and `;`).
fn is_literal(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,=:@".contains(&b)
}

/// Canonicalises a request path (the part of the target before `?`).
pub fn canonicalize(path: &str, slashes: EscapedSlashes) -> Result<CanonicalPath<'_>, PathError> {
    if is_canonical_literal(path) {
        return Ok(CanonicalPath { matched: path.into(), forward: path.into() });
    }
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let decoded = decode(path.as_bytes(), slashes)?;
    let decoded = String::from_utf8(decoded).map_err(|_| PathError::BadEncoding)?;
    if decoded.chars().any(is_confusable) {
        return Err(PathError::Confusable);
    }
    let mut matched = String::with_capacity(decoded.len());
    for segment in decoded.split('/').filter(|s| !s.is_empty()) {
        if segment.bytes().all(|b| b == b'.' || b == b' ') {
            return Err(PathError::DotSegment);
        }
        matched.push('/');
        matched.push_str(segment);
    }
    if matched.is_empty() || decoded.ends_with('/') {
        matched.push('/');
    }
    let forward = encode(&matched);
    let forward: Cow<'_, str> = if forward == path { path.into() } else { forward.into() };
    Ok(CanonicalPath { matched: matched.into(), forward })
}

/// The fast path: only literal characters, no `//`, no segment of dots. One pass, no copy.
fn is_canonical_literal(path: &str) -> bool {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return false;
    }
    let mut prev_slash = true;
    let mut only_dots = false;
    for &b in &bytes[1..] {
        if b == b'/' {
            if prev_slash || only_dots {
                return false;
            }
            prev_slash = true;
        } else if is_literal(b) {
            only_dots = if prev_slash { b == b'.' } else { only_dots && b == b'.' };
            prev_slash = false;
        } else {
            return false;
        }
    }
    !only_dots
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Decodes every escape once, refusing what must not appear in a matched path.
fn decode(bytes: &[u8], slashes: EscapedSlashes) -> Result<Vec<u8>, PathError> {
    let mut out = Vec::with_capacity(bytes.len());
    // Where a `%25` landed: followed by two hex digits it was an escape written twice.
    let mut percents = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let escaped = b == b'%';
        let b = if escaped {
            let (Some(h), Some(l)) = (bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex))
            else {
                return Err(PathError::BadEncoding);
            };
            i += 3;
            (h << 4) | l
        } else {
            i += 1;
            b
        };
        match b {
            0..=0x1f | 0x7f => return Err(PathError::Control),
            b'\\' => return Err(PathError::Backslash),
            b';' => return Err(PathError::Semicolon),
            b'/' if escaped => match slashes {
                EscapedSlashes::Reject => return Err(PathError::EscapedSlash),
                EscapedSlashes::Unescape => out.push(b'/'),
                // Kept as its escape: the only `%XX` a matched path can hold (see `encode`).
                EscapedSlashes::Keep => out.extend_from_slice(b"%2F"),
            },
            b'%' => {
                percents.push(out.len());
                out.push(b'%');
            }
            _ => out.push(b),
        }
    }
    let is_hex = |j: usize| out.get(j).copied().and_then(hex).is_some();
    if percents.iter().any(|&j| is_hex(j + 1) && is_hex(j + 2)) {
        return Err(PathError::DoubleEncoding);
    }
    Ok(out)
}

/// Encodes a matched path for the request line. A `%` followed by two hex digits can only
/// be a kept `%2F` (double encoding is refused), so it stays as it is.
fn encode(matched: &str) -> String {
    let bytes = matched.as_bytes();
    let mut out = String::with_capacity(bytes.len() + 8);
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' && bytes.get(i + 1..i + 3) == Some(b"2F") {
            out.push_str("%2F");
            i += 3;
            continue;
        }
        if b == b'/' || is_literal(b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(char::from_digit(u32::from(b >> 4), 16).expect("nibble").to_ascii_uppercase());
            out.push(char::from_digit(u32::from(b & 15), 16).expect("nibble").to_ascii_uppercase());
        }
        i += 1;
    }
    out
}

/// Characters whose NFKC form holds `/ \ . ; % ? #`, plus Windows best-fit mappings of
/// slashes and backslashes (`∕`, `⁄`, `⧸`, `∖`, `¥`, `₩`): an upstream that normalises
/// would see a delimiter Gatehouse did not.
fn is_confusable(c: char) -> bool {
    const RANGES: [(u32, u32); 33] = [
        (0x00A5, 0x00A5),
        (0x037E, 0x037E),
        (0x2024, 0x2026),
        (0x2044, 0x2044),
        (0x2047, 0x2049),
        (0x20A9, 0x20A9),
        (0x2100, 0x2101),
        (0x2105, 0x2106),
        (0x2215, 0x2216),
        (0x2488, 0x249B),
        (0x29F5, 0x29F5),
        (0x29F8, 0x29F9),
        (0x33C2, 0x33C2),
        (0x33C7, 0x33C7),
        (0x33D8, 0x33D8),
        (0xFE14, 0xFE14),
        (0xFE16, 0xFE16),
        (0xFE19, 0xFE19),
        (0xFE30, 0xFE30),
        (0xFE52, 0xFE52),
        (0xFE54, 0xFE54),
        (0xFE56, 0xFE56),
        (0xFE5F, 0xFE5F),
        (0xFE68, 0xFE68),
        (0xFE6A, 0xFE6A),
        (0xFF03, 0xFF03),
        (0xFF05, 0xFF05),
        (0xFF0E, 0xFF0F),
        (0xFF1B, 0xFF1B),
        (0xFF1F, 0xFF1F),
        (0xFF3C, 0xFF3C),
        (0x1F100, 0x1F100),
        (0xE0000, 0xE007F),
    ];
    let c = c as u32;
    c >= 0x80 && RANGES.iter().any(|&(lo, hi)| (lo..=hi).contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(p: &str) -> Result<(String, String), PathError> {
        canonicalize(p, EscapedSlashes::Reject).map(|c| (c.matched().to_string(), c.forward().to_string()))
    }

    #[test]
    fn accepted_forms() {
        let table: &[(&str, &str, &str)] = &[
            ("/", "/", "/"),
            ("/a/b", "/a/b", "/a/b"),
            ("/a/b/", "/a/b/", "/a/b/"),
            ("/%61dmin/x", "/admin/x", "/admin/x"),
            ("/%41DMIN", "/ADMIN", "/ADMIN"),
            ("//admin//x/", "/admin/x/", "/admin/x/"),
            ("/a.b/.c/..d", "/a.b/.c/..d", "/a.b/.c/..d"),
            ("/caf%C3%A9", "/café", "/caf%C3%A9"),
            ("/caf%c3%a9", "/café", "/caf%C3%A9"),
            ("/a%20b", "/a b", "/a%20b"),
            ("/a%3Fb%23c", "/a?b#c", "/a%3Fb%23c"),
            ("/100%25", "/100%", "/100%25"),
            ("/x:y@z!$&'()*+,=~", "/x:y@z!$&'()*+,=~", "/x:y@z!$&'()*+,=~"),
            ("/%7e", "/~", "/~"),
        ];
        for (raw, matched, forward) in table {
            assert_eq!(canon(raw), Ok((matched.to_string(), forward.to_string())), "{raw}");
        }
        assert!(canonicalize("/a/b", EscapedSlashes::Reject).unwrap().is_unchanged());
        assert!(!canonicalize("//a", EscapedSlashes::Reject).unwrap().is_unchanged());
    }

    #[test]
    fn refused_forms() {
        use PathError::*;
        let table: &[(&str, PathError)] = &[
            ("/public/../admin", DotSegment),
            ("/public/./admin", DotSegment),
            ("/public/..", DotSegment),
            ("/..", DotSegment),
            ("/public/%2e%2e/admin", DotSegment),
            ("/public/%2E%2e/admin", DotSegment),
            ("/public/.%2E/admin", DotSegment),
            ("/public/%2e/admin", DotSegment),
            ("/public/.. /admin", DotSegment),
            ("/public/..%20/admin", DotSegment),
            ("/public/...", DotSegment),
            ("/public/..;/admin", Semicolon),
            ("/admin;jsessionid=1", Semicolon),
            ("/public/%3b/admin", Semicolon),
            ("/a/..\\admin", Backslash),
            ("/a%5cadmin", Backslash),
            ("/admin%2Fusers", EscapedSlash),
            ("/admin%2fusers", EscapedSlash),
            ("/bad%zz", BadEncoding),
            ("/bad%2", BadEncoding),
            ("/bad%", BadEncoding),
            ("/nul%00", Control),
            ("/a%0d%0aX-Injected:1", Control),
            ("/a%09b", Control),
            ("/a%7f", Control),
            ("/%ff%fe", BadEncoding),
            ("/%c0%ae%c0%ae/admin", BadEncoding),
            ("/%e0%80%ae", BadEncoding),
            ("/%252e%252e/admin", DoubleEncoding),
            ("/%25%32%65", DoubleEncoding),
            ("/a%252Fb", DoubleEncoding),
            ("/%EF%BC%8F..%EF%BC%8Fadmin", Confusable),
            ("/%EF%BC%8E%EF%BC%8E/admin", Confusable),
            ("/a%E2%88%95b", Confusable),
            ("relative", NotAbsolute),
            ("", NotAbsolute),
        ];
        for (raw, err) in table {
            assert_eq!(canon(raw), Err(*err), "{raw}");
        }
    }

    #[test]
    fn escaped_slash_policies() {
        let u = canonicalize("/admin%2Fusers", EscapedSlashes::Unescape).unwrap();
        assert_eq!((u.matched(), u.forward()), ("/admin/users", "/admin/users"));
        assert_eq!(canonicalize("/a%2F..%2Fadmin", EscapedSlashes::Unescape), Err(PathError::DotSegment));
        assert_eq!(canonicalize("/a%2F%2Fb", EscapedSlashes::Unescape).unwrap().matched(), "/a/b");
        let k = canonicalize("/repos/a%2fb/x", EscapedSlashes::Keep).unwrap();
        assert_eq!((k.matched(), k.forward()), ("/repos/a%2Fb/x", "/repos/a%2Fb/x"));
        assert_eq!(canonicalize("/a%2F..%2Fadmin", EscapedSlashes::Keep).unwrap().matched(), "/a%2F..%2Fadmin");
        assert_eq!(canonicalize("/a%252Fb", EscapedSlashes::Keep), Err(PathError::DoubleEncoding));
    }

    #[test]
    fn canonical_is_a_fixed_point() {
        for slashes in [EscapedSlashes::Reject, EscapedSlashes::Unescape, EscapedSlashes::Keep] {
            for raw in ["/%61/b//c/", "/caf%c3%a9/%20x", "/a%2fb", "/100%25/x", "/a%3F", "/%7E~"] {
                let Ok(once) = canonicalize(raw, slashes) else { continue };
                let twice = canonicalize(once.forward(), slashes).unwrap();
                assert_eq!(twice.forward(), once.forward(), "{raw} {slashes:?}");
                assert_eq!(twice.matched(), once.matched(), "{raw} {slashes:?}");
                assert!(twice.is_unchanged(), "{raw} {slashes:?}");
            }
        }
    }
}
