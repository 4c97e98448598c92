//! Tags (surrogate keys): the templates routes and invalidation rules
//! write (`conversation:{id}`), and the reading of the app's tag headers
//! (`Surrogate-Key: a b`, `Cache-Tag: a,b`) within their bounds
//! (docs/invalidation.md, "Tags"). Pure: no I/O.

use http::{HeaderMap, HeaderName};

use super::table::Captures;
use super::template::PatternError;

/// A tag as a route or a rule writes it: literal text and `{capture}`s.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TagTemplate {
    text: Box<str>,
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Part {
    Lit(Box<str>),
    Capture(Box<str>),
}

/// `cache.tags`: which response headers carry tags, and the bounds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagHeaders {
    /// Read in order; each value split at spaces and commas.
    pub names: Vec<HeaderName>,
    /// Removed from responses before the client sees them.
    pub strip: bool,
    /// Most tags kept per entry; later ones are dropped.
    pub max_per_entry: usize,
    /// Longest tag in bytes; longer ones are dropped.
    pub max_length: usize,
}

/// What reading a response's tag headers found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReadTags {
    /// Sorted, without duplicates, at most `max_per_entry`.
    pub tags: Vec<Box<str>>,
    /// Dropped beyond `max_per_entry`.
    pub over_count: usize,
    /// Dropped for being longer than `max_length`.
    pub too_long: usize,
}

// === impl TagTemplate ===

impl TagTemplate {
    /// Parses `text`; every `{name}` must be one of `captures`.
    ///
    /// # Errors
    ///
    /// An empty tag, a space or comma (the separators of tag headers), an
    /// unclosed brace, or a capture that is not in `captures`.
    pub fn parse(text: &str, captures: &[&str]) -> Result<Self, PatternError> {
        let err = |why: String| Err(PatternError(format!("tag `{text}`: {why}")));
        if let Err(why) = check(text) {
            return err(why);
        }
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Lit(rest[..open].into()));
            }
            let Some(close) = rest[open..].find('}') else {
                return err("`{` without `}`".into());
            };
            let name = &rest[open + 1..open + close];
            if !captures.contains(&name) {
                return err(format!(
                    "`{{{name}}}` is not a capture of the match (captures: {})",
                    if captures.is_empty() {
                        "none".to_string()
                    } else {
                        captures.join(", ")
                    }
                ));
            }
            parts.push(Part::Capture(name.into()));
            rest = &rest[open + close + 1..];
        }
        if rest.contains('}') {
            return err("`}` without `{`".into());
        }
        if !rest.is_empty() {
            parts.push(Part::Lit(rest.into()));
        }
        Ok(Self {
            text: text.into(),
            parts,
        })
    }

    /// The tag as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The tag for a request or mutation with `captures` (a capture that
    /// did not match reads as empty).
    pub fn render(&self, captures: &Captures<'_, '_>) -> String {
        let mut out = String::with_capacity(self.text.len() + 16);
        for part in &self.parts {
            match part {
                Part::Lit(s) => out.push_str(s),
                Part::Capture(c) => out.push_str(captures.get(c).unwrap_or("")),
            }
        }
        out
    }
}

/// Whether `tag` is one a tag header could carry: not empty, visible ASCII,
/// no comma (for the admin API, which names tags as the app sent them).
///
/// # Errors
///
/// Why it is not.
pub fn check(tag: &str) -> Result<(), String> {
    if tag.is_empty() {
        return Err("is empty".into());
    }
    match tag.chars().find(|c| !is_tag_char(*c)) {
        Some(c) => Err(format!(
            "{c:?} cannot be in a tag (tags are visible ASCII, without spaces or commas)"
        )),
        None => Ok(()),
    }
}

/// Tags are visible ASCII without the separators of tag headers; braces
/// are checked by the template parser.
fn is_tag_char(c: char) -> bool {
    c.is_ascii_graphic() && c != ','
}

// === impl TagHeaders ===

impl TagHeaders {
    /// The tags of a response, from the configured headers, bounded.
    pub fn read(&self, headers: &HeaderMap) -> ReadTags {
        let mut read = ReadTags::default();
        if self.names.is_empty() {
            return read;
        }
        let mut seen: Vec<&str> = Vec::new();
        let values = self.names.iter().flat_map(|n| headers.get_all(n));
        for value in values {
            let Ok(value) = value.to_str() else { continue };
            for tag in value.split([' ', ',', '\t']).filter(|t| !t.is_empty()) {
                if tag.len() > self.max_length {
                    read.too_long += 1;
                } else if !seen.contains(&tag) {
                    seen.push(tag);
                }
            }
        }
        if seen.len() > self.max_per_entry {
            read.over_count = seen.len() - self.max_per_entry;
            seen.truncate(self.max_per_entry);
        }
        let mut tags: Vec<Box<str>> = seen.into_iter().map(Into::into).collect();
        tags.sort_unstable();
        read.tags = tags;
        read
    }

    /// Removes the tag headers from `headers` when they are to be stripped.
    pub fn strip_from(&self, headers: &mut HeaderMap) {
        if self.strip {
            for name in &self.names {
                headers.remove(name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(max_per_entry: usize, max_length: usize) -> TagHeaders {
        TagHeaders {
            names: vec![
                HeaderName::from_static("surrogate-key"),
                HeaderName::from_static("cache-tag"),
            ],
            strip: true,
            max_per_entry,
            max_length,
        }
    }

    #[test]
    fn templates_render_captures_and_refuse_what_a_header_could_not_carry() {
        let t = TagTemplate::parse("conversation:{id}:{part}", &["id", "part"]).unwrap();
        let caps = Captures::from_pairs(vec![("id", "42"), ("part", "msgs")]);
        assert_eq!(t.render(&caps), "conversation:42:msgs");
        assert_eq!(
            TagTemplate::parse("docs", &[]).unwrap().render(&caps),
            "docs"
        );
        for (bad, why) in [
            ("", "empty"),
            ("a b", "cannot be in a tag"),
            ("a,b", "cannot be in a tag"),
            ("x:{id", "without `}`"),
            ("x}", "without `{`"),
            ("x:{nope}", "is not a capture of the match (captures: id)"),
        ] {
            let e = TagTemplate::parse(bad, &["id"]).unwrap_err();
            assert!(e.0.contains(why), "{bad}: {}", e.0);
        }
    }

    #[test]
    fn header_tags_are_split_deduplicated_and_bounded() {
        let mut h = HeaderMap::new();
        h.append("surrogate-key", HeaderValue::from_static("b a  b"));
        h.append("cache-tag", HeaderValue::from_static("c,a, d"));
        h.append("cache-tag", HeaderValue::from_static("toolongtag"));
        let read = headers(3, 5).read(&h);
        assert_eq!(
            read.tags,
            vec!["a".into(), "b".into(), "c".into()] as Vec<Box<str>>
        );
        assert_eq!((read.over_count, read.too_long), (1, 1));
        let mut h2 = h.clone();
        headers(3, 5).strip_from(&mut h2);
        assert!(h2.is_empty());
        let none = TagHeaders {
            names: Vec::new(),
            ..headers(3, 5)
        };
        assert_eq!(none.read(&h), ReadTags::default());
    }
}
