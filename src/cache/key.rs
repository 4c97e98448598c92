//! The vocabulary of keys: the digest an entry is stored under
//! ([`KeyHash`]), the tokens whose generations it depends on ([`Token`]),
//! and the two together ([`CacheKey`]). Building a request's key is the
//! proxy's (`proxy/key.rs`); this module only names the parts.

use std::fmt;
use std::sync::Arc;

/// A 256-bit digest of everything that selects a response: route fingerprint,
/// host, path, keyed query, keyed headers and the identity hash.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash(pub [u8; 32]);

/// A name whose generation counter some entries depend on, e.g.
/// `r:conversation`, `b:conversation|id=42` or `u:/api/conversations/42`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Token(Box<str>);

/// How one request is cached.
///
/// A wrong key is cache poisoning: two requests that may get different
/// responses must never share a key. `proxy/key.rs` is the only place that
/// builds one.
#[derive(Clone, Debug)]
pub struct CacheKey {
    /// The route name: the metric label and the Redis key namespace.
    pub route: Arc<str>,
    /// The digest that selects the entry.
    pub hash: KeyHash,
    /// Tokens whose generations the entry depends on; never empty (the first
    /// is always the route token).
    pub tokens: Vec<Token>,
}

// === impl Token ===

impl Token {
    /// The token every entry of `route` depends on.
    pub fn route(route: &str) -> Self {
        Token(format!("r:{route}").into())
    }

    /// The token of the entries of `route` whose captures have these values.
    pub fn binding<'a>(route: &str, pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut s = format!("b:{route}|");
        for (i, (name, value)) in pairs.into_iter().enumerate() {
            if i > 0 {
                s.push('&');
            }
            s.push_str(name);
            s.push('=');
            push_escaped(&mut s, value);
        }
        Token(s.into())
    }

    /// The token of every entry stored for this normalized path, across
    /// query strings, users and variants.
    pub fn url(path: &str) -> Self {
        let mut s = String::with_capacity(path.len() + 2);
        s.push_str("u:");
        push_escaped(&mut s, path);
        Token(s.into())
    }

    /// The token of every entry carrying `tag` (a surrogate key: from the
    /// app's tag header, or from the route's `tags`).
    pub fn tag(tag: &str) -> Self {
        let mut s = String::with_capacity(tag.len() + 2);
        s.push_str("t:");
        s.push_str(tag);
        Token(s.into())
    }

    /// The tag epoch: bumped before the tokens of every tag purge, and read
    /// by every lookup, so a fill whose tags were purged while it was in
    /// flight can tell (docs/architecture.md, "Tags"). No entry depends on it.
    pub fn tag_epoch() -> &'static Self {
        static EPOCH: std::sync::LazyLock<Token> =
            std::sync::LazyLock::new(|| Token("tags".into()));
        &EPOCH
    }

    /// Whether this is a tag's token.
    pub fn is_tag(&self) -> bool {
        self.0.starts_with("t:")
    }

    /// The tag of a tag's token (`user:7` of `t:user:7`).
    pub fn tag_name(&self) -> Option<&str> {
        self.0.strip_prefix("t:")
    }

    /// The token's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Escapes the separators a token uses, so that two different bindings never
/// spell the same token. (Escaping may merge `&` with `%26`: that only ever
/// invalidates more, never less.)
fn push_escaped(out: &mut String, value: &str) {
    if !value.contains(['&', '=', '|']) {
        out.push_str(value);
        return;
    }
    for c in value.chars() {
        match c {
            '&' => out.push_str("%26"),
            '=' => out.push_str("%3D"),
            '|' => out.push_str("%7C"),
            c => out.push(c),
        }
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// === impl KeyHash ===

impl KeyHash {
    /// Lower-case hex, for Redis keys and `/admin/explain`.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(64);
        self.push_hex(&mut s);
        s
    }

    /// Appends the lower-case hex to `s` (a Redis key is built in one buffer).
    pub fn push_hex(&self, s: &mut String) {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        for b in self.0 {
            s.push(DIGITS[usize::from(b >> 4)] as char);
            s.push(DIGITS[usize::from(b & 0xf)] as char);
        }
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHash({})", &self.to_hex()[..16])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_escape_their_separators() {
        assert_eq!(Token::route("docs").as_str(), "r:docs");
        assert_eq!(
            Token::binding("c", [("id", "4&x=2"), ("m", "a|b")]).as_str(),
            "b:c|id=4%26x%3D2&m=a%7Cb"
        );
        assert_ne!(
            Token::binding("c", [("id", "1&m=2")]),
            Token::binding("c", [("id", "1"), ("m", "2")])
        );
        assert_eq!(Token::url("/a/b").as_str(), "u:/a/b");
        assert_eq!(Token::tag("user:7").as_str(), "t:user:7");
        assert!(Token::tag("x").is_tag() && !Token::tag_epoch().is_tag());
    }

    #[test]
    fn hex_is_two_lower_case_digits_per_byte() {
        let mut bytes = [0u8; 32];
        bytes[..4].copy_from_slice(&[0x00, 0x0f, 0xa0, 0xff]);
        let hex = KeyHash(bytes).to_hex();
        assert_eq!(hex.len(), 64);
        assert_eq!(&hex[..8], "000fa0ff");
        assert!(hex[8..].bytes().all(|b| b == b'0'));
    }
}
