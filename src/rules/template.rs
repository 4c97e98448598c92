//! Path templates and request patterns: `GET /api/items/{id}` split into
//! its method and a [`Template`] of whole segments, and the exact overlap
//! analysis ([`overlaps`], [`covers`]) that `cachecar check` and purge
//! target resolution rely on.
//!
//! Templates are `/path/{param}/{*rest}`: every segment is either literal,
//! a whole-segment `{name}` capture, or a final `{*name}` catch-all. Keeping
//! captures whole-segment is what makes the overlap analysis exact. Pure:
//! no I/O.

use std::fmt;

use http::Method;

/// One segment of a path template.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Segment {
    /// Matches exactly this text (may be empty, for `//` or a trailing `/`).
    Static(Box<str>),
    /// `{name}`: any one segment.
    Param(Box<str>),
    /// `{*name}`: the rest of the path, one segment or more.
    CatchAll(Box<str>),
}

/// A parsed path template such as `/api/conversations/{id}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Template {
    text: Box<str>,
    segments: Vec<Segment>,
}

/// Something wrong with a template or pattern; the message is for humans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError(pub String);

// === Patterns ===

/// Splits `"GET /api/x"` into its method and path.
///
/// # Errors
///
/// When the text is not `METHOD /path` with a known HTTP method token.
pub fn split_pattern(text: &str) -> Result<(Method, &str), PatternError> {
    let text = text.trim();
    let Some((method, path)) = text.split_once(char::is_whitespace) else {
        return Err(PatternError(format!(
            "`{text}` must be `METHOD /path`, e.g. `GET /api/items/{{id}}`"
        )));
    };
    let path = path.trim();
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(PatternError(format!(
            "`{method}` is not an HTTP method (write it in capitals, e.g. GET)"
        )));
    }
    let method = Method::from_bytes(method.as_bytes())
        .map_err(|_| PatternError(format!("`{method}` is not an HTTP method")))?;
    if !path.starts_with('/') {
        return Err(PatternError(format!(
            "the path `{path}` must start with `/`"
        )));
    }
    Ok((method, path))
}

// === impl Template ===

impl Template {
    /// Parses a route template.
    ///
    /// # Errors
    ///
    /// Braces that are not a whole-segment `{name}`, a catch-all that is not
    /// last, a repeated capture name, a query string, or a literal segment
    /// that is not in the normalized form requests are matched in.
    pub fn parse(path: &str) -> Result<Self, PatternError> {
        let Some(body) = path.strip_prefix('/') else {
            return Err(PatternError(format!("`{path}` must start with `/`")));
        };
        if path.contains(['?', '#']) {
            return Err(PatternError(format!(
                "`{path}`: templates match paths only; query strings are keyed with `key.query`"
            )));
        }
        let raw: Vec<&str> = body.split('/').collect();
        let mut segments = Vec::with_capacity(raw.len());
        for (i, seg) in raw.iter().enumerate() {
            let last = i + 1 == raw.len();
            segments.push(parse_segment(path, seg, last)?);
        }
        let mut names: Vec<&str> = Vec::new();
        for seg in &segments {
            if let Segment::Param(n) | Segment::CatchAll(n) = seg {
                if names.contains(&&**n) {
                    return Err(PatternError(format!(
                        "`{path}` uses the capture name `{n}` twice"
                    )));
                }
                names.push(n);
            }
        }
        Ok(Self {
            text: path.into(),
            segments,
        })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The parsed segments.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Capture names in order.
    pub fn params(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Param(n) | Segment::CatchAll(n) => Some(&**n),
            Segment::Static(_) => None,
        })
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn parse_segment(path: &str, seg: &str, last: bool) -> Result<Segment, PatternError> {
    if let Some(inner) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
        let (catch_all, name) = match inner.strip_prefix('*') {
            Some(name) => (true, name),
            None => (false, inner),
        };
        if !is_capture_name(name) {
            return Err(PatternError(format!(
                "`{path}`: `{seg}` is not a valid capture; names are letters, digits and `_`"
            )));
        }
        if catch_all && !last {
            return Err(PatternError(format!(
                "`{path}`: the catch-all `{seg}` must be the last segment"
            )));
        }
        return Ok(if catch_all {
            Segment::CatchAll(name.into())
        } else {
            Segment::Param(name.into())
        });
    }
    if seg.contains(['{', '}']) {
        return Err(PatternError(format!(
            "`{path}`: `{seg}` mixes text and a capture; a capture must be a whole segment"
        )));
    }
    if seg.contains('*') {
        return Err(PatternError(format!(
            "`{path}`: `*` is only allowed as a whole final segment of a purge target"
        )));
    }
    let normalized =
        super::normalize::segment(seg).map_err(|e| PatternError(format!("`{path}`: {e}")))?;
    if normalized != seg {
        return Err(PatternError(format!(
            "`{path}`: write the segment `{seg}` in normalized form, `{normalized}`"
        )));
    }
    Ok(Segment::Static(seg.into()))
}

/// Capture names: what both matchit and a Redis token can carry unescaped.
pub fn is_capture_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

// === Overlap analysis ===

/// Whether some path matches both templates.
pub fn overlaps(a: &[Segment], b: &[Segment]) -> bool {
    match (a.split_first(), b.split_first()) {
        (None, None) => true,
        (Some((Segment::CatchAll(_), _)), _) => catch_all_takes(b),
        (_, Some((Segment::CatchAll(_), _))) => catch_all_takes(a),
        (None, Some(_)) | (Some(_), None) => false,
        (Some((Segment::Static(x), ra)), Some((Segment::Static(y), rb))) => {
            x == y && overlaps(ra, rb)
        }
        (Some((Segment::Param(_), ra)), Some((Segment::Static(s), rb)))
        | (Some((Segment::Static(s), ra)), Some((Segment::Param(_), rb))) => {
            !s.is_empty() && overlaps(ra, rb)
        }
        (Some((_, ra)), Some((_, rb))) => overlaps(ra, rb),
    }
}

/// Whether every path matching `b` also matches `a`.
pub fn covers(a: &[Segment], b: &[Segment]) -> bool {
    match (a.split_first(), b.split_first()) {
        (None, None) => true,
        (Some((Segment::CatchAll(_), _)), _) => catch_all_takes(b),
        (Some((Segment::Param(_), ra)), Some((Segment::Static(s), rb))) => {
            !s.is_empty() && covers(ra, rb)
        }
        (Some((Segment::Param(_), ra)), Some((Segment::Param(_), rb))) => covers(ra, rb),
        (Some((Segment::Static(x), ra)), Some((Segment::Static(y), rb))) => {
            x == y && covers(ra, rb)
        }
        _ => false,
    }
}

/// Whether a catch-all can take the rest of every path matching `rest`: it
/// takes one character at least, so not the nothing after `/` in `/` or
/// `/a/` (a single empty segment), nor the end of a path.
fn catch_all_takes(rest: &[Segment]) -> bool {
    match rest {
        [] => false,
        [Segment::Static(s)] => !s.is_empty(),
        _ => true,
    }
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
