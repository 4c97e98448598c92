//! Route matching: normalized path -> the first rule whose template matches,
//! plus its captures. Pure: no I/O, no config loading.
//!
//! Templates are `/path/{param}/{*rest}`: every segment is either literal,
//! a whole-segment `{name}` capture, or a final `{*name}` catch-all. Keeping
//! captures whole-segment makes the overlap analysis below exact, which both
//! `cachecar check` (overlapping and unreachable routes) and purge-target
//! resolution rely on.
//!
//! Config order decides ("first match wins"), while matchit, which does the
//! matching, prefers the most specific route and refuses some pairs of
//! routes in one router (`/a/{x}` beside `/a/{*rest}`). So [`RouteTable`]
//! spreads templates over as few matchit routers ("layers") as it can, takes
//! the lowest-numbered candidate, then checks only the earlier rules known to
//! overlap that candidate. A typical table is one layer and no checks.

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

/// Rules in config order, matched first-match-wins.
#[derive(Debug)]
pub struct RouteTable<T> {
    values: Vec<T>,
    templates: Vec<Template>,
    /// matchit routers holding every template; value = index into `values`.
    layers: Vec<matchit::Router<usize>>,
    /// One router per template, to test a single rule.
    singles: Vec<matchit::Router<()>>,
    /// Per rule: the earlier rules that can match some path it matches.
    earlier_overlaps: Vec<Box<[usize]>>,
}

/// The rule a path matched, with the captured segments.
#[derive(Debug)]
pub struct RouteMatch<'t, 'p, T> {
    /// Position of the rule in config order.
    pub index: usize,
    /// The rule.
    pub value: &'t T,
    /// `(name, raw value)` for each capture, in template order.
    pub captures: Captures<'t, 'p>,
}

/// The captures of one match.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Captures<'t, 'p>(Vec<(&'t str, &'p str)>);

/// Rules that earlier rules get in the way of, for `cachecar check`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Shadowing {
    /// `(rule, earlier rule)`: every path the rule matches goes to the earlier one.
    pub unreachable: Vec<(usize, usize)>,
    /// `(later, earlier)`: some paths match both and go to the earlier one.
    pub overlapping: Vec<(usize, usize)>,
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
        (Some((Segment::CatchAll(_), _)), _) => !b.is_empty(),
        (_, Some((Segment::CatchAll(_), _))) => !a.is_empty(),
        (None, Some(_)) | (Some(_), None) => false,
        (Some((Segment::Static(x), ra)), Some((Segment::Static(y), rb))) => {
            x == y && overlaps(ra, rb)
        }
        (Some((_, ra)), Some((_, rb))) => overlaps(ra, rb),
    }
}

/// Whether every path matching `b` also matches `a`.
pub fn covers(a: &[Segment], b: &[Segment]) -> bool {
    match (a.split_first(), b.split_first()) {
        (None, None) => true,
        (Some((Segment::CatchAll(_), _)), _) => !b.is_empty(),
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

// === impl RouteTable ===

impl<T> RouteTable<T> {
    /// Builds a table from rules in config order.
    ///
    /// # Errors
    ///
    /// Only if matchit refuses a template that [`Template::parse`] accepted,
    /// which would be a bug; the message names the template.
    pub fn new(rules: Vec<(Template, T)>) -> Result<Self, PatternError> {
        let mut values = Vec::with_capacity(rules.len());
        let mut templates = Vec::with_capacity(rules.len());
        let mut layers: Vec<matchit::Router<usize>> = Vec::new();
        let mut singles = Vec::with_capacity(rules.len());
        for (index, (template, value)) in rules.into_iter().enumerate() {
            let mut single = matchit::Router::new();
            single
                .insert(template.as_str(), ())
                .map_err(|e| PatternError(format!("`{template}`: {e}")))?;
            singles.push(single);
            let placed = layers
                .iter_mut()
                .any(|layer| layer.insert(template.as_str(), index).is_ok());
            if !placed {
                let mut layer = matchit::Router::new();
                layer
                    .insert(template.as_str(), index)
                    .map_err(|e| PatternError(format!("`{template}`: {e}")))?;
                layers.push(layer);
            }
            templates.push(template);
            values.push(value);
        }
        let earlier_overlaps = (0..templates.len())
            .map(|i| {
                (0..i)
                    .filter(|&j| overlaps(templates[j].segments(), templates[i].segments()))
                    .collect()
            })
            .collect();
        Ok(Self {
            values,
            templates,
            layers,
            singles,
            earlier_overlaps,
        })
    }

    /// The first rule matching `path`, in config order.
    pub fn find<'t, 'p>(&'t self, path: &'p str) -> Option<RouteMatch<'t, 'p, T>> {
        let mut best: Option<(usize, matchit::Params<'t, 'p>)> = None;
        for layer in &self.layers {
            if let Ok(m) = layer.at(path)
                && best.as_ref().is_none_or(|(b, _)| *m.value < *b)
            {
                best = Some((*m.value, m.params));
            }
        }
        let (candidate, params) = best?;
        for &earlier in self.earlier_overlaps[candidate].iter() {
            if let Ok(m) = self.singles[earlier].at(path) {
                return Some(self.matched(earlier, &m.params));
            }
        }
        Some(self.matched(candidate, &params))
    }

    /// Every rule matching `path`, in config order.
    pub fn find_all<'t, 'p>(
        &'t self,
        path: &'p str,
    ) -> impl Iterator<Item = RouteMatch<'t, 'p, T>> + use<'t, 'p, T> {
        (0..self.values.len()).filter_map(move |i| {
            let m = self.singles[i].at(path).ok()?;
            Some(self.matched(i, &m.params))
        })
    }

    fn matched<'t, 'p>(
        &'t self,
        index: usize,
        params: &matchit::Params<'t, 'p>,
    ) -> RouteMatch<'t, 'p, T> {
        RouteMatch {
            index,
            value: &self.values[index],
            captures: Captures(params.iter().collect()),
        }
    }

    /// The rules in config order.
    pub fn values(&self) -> &[T] {
        &self.values
    }

    /// The templates in config order.
    pub fn templates(&self) -> &[Template] {
        &self.templates
    }

    /// True when the table has no rules.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// For `cachecar check`: rules covered by one earlier rule, and pairs
    /// that merely overlap.
    pub fn shadowing(&self) -> Shadowing {
        let mut unreachable = Vec::new();
        let mut overlapping = Vec::new();
        for (i, earlier) in self.earlier_overlaps.iter().enumerate() {
            let covering = earlier
                .iter()
                .find(|&&j| covers(self.templates[j].segments(), self.templates[i].segments()));
            match covering {
                Some(&j) => unreachable.push((i, j)),
                None => overlapping.extend(earlier.iter().map(|&j| (i, j))),
            }
        }
        Shadowing {
            unreachable,
            overlapping,
        }
    }
}

// === impl Captures ===

impl<'t, 'p> Captures<'t, 'p> {
    /// The value captured under `name`.
    pub fn get(&self, name: &str) -> Option<&'p str> {
        self.0.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }

    /// All captures in template order.
    pub fn iter(&self) -> impl Iterator<Item = (&'t str, &'p str)> + '_ {
        self.0.iter().copied()
    }
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests;
