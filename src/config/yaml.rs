//! A YAML document as a tree of located nodes, and the small reader API that
//! `file.rs` uses to turn it into a `RawConfig`.
//!
//! serde stops at the first problem; operators want every problem of a file
//! at once, each with its line and column. So serde-saphyr parses the text
//! into a generic tree where every node keeps its location, and the readers
//! below walk it, recording a [`Problem`] for each bad value and each unknown
//! key and carrying on. Nothing here knows the config's shape.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

mod read;

#[cfg(test)]
use read::parse_byte_size;
pub use read::parse_duration;
pub(crate) use read::{
    boolean, byte_size, duration, fraction, integer, list, one_of, scalar_text, string,
};

// === Problems ===

/// Where a node starts in the file: 1-based line and column.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Loc {
    /// 1-based line; 0 when unknown.
    pub line: u64,
    /// 1-based column in characters; 0 when unknown.
    pub column: u64,
}

/// One thing wrong with a config file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Where it is, if it can be pinned to a place in the file.
    pub loc: Option<Loc>,
    /// The dotted key path, e.g. `routes[2].ttl`; empty for the document.
    pub path: String,
    /// What is wrong, and where useful what would be right.
    pub message: String,
}

/// Every problem found so far, in the order found.
#[derive(Debug, Default)]
pub struct Problems(Vec<Problem>);

// === Tree ===

/// A YAML node with its location.
pub type Node = Spanned<Value>;

/// The value of a YAML node, children located too.
#[derive(Debug, Clone)]
pub enum Value {
    /// `~`, `null` or nothing at all.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer that fits in `i64` (or a `u64` clamped into one).
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// Any string scalar, quoted or plain.
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in document order.
    Map(Vec<(Node, Node)>),
}

/// Reads one map node: hands out values by key, remembers which keys were
/// read, and reports the rest as unknown in [`MapReader::finish`].
pub struct MapReader<'a> {
    path: String,
    /// (key, key node, value node, read yet)
    entries: Vec<(&'a str, &'a Node, &'a Node, bool)>,
}

// === impl Problems ===

impl Problems {
    /// Records a problem at `node` (or without a place when `node` is `None`).
    pub fn at(&mut self, node: Option<&Node>, path: &str, message: impl Into<String>) {
        self.0.push(Problem {
            loc: node.map(loc_of),
            path: path.to_string(),
            message: message.into(),
        });
    }

    /// Records a problem with a known location.
    pub fn at_loc(&mut self, loc: Option<Loc>, path: &str, message: impl Into<String>) {
        self.0.push(Problem {
            loc,
            path: path.to_string(),
            message: message.into(),
        });
    }

    /// True when nothing was wrong.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The problems, sorted by place in the file (problems without a place last).
    pub fn into_sorted(mut self) -> Vec<Problem> {
        self.0
            .sort_by_key(|p| p.loc.map_or((u64::MAX, u64::MAX), |l| (l.line, l.column)));
        self.0
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(loc) = self.loc.filter(|l| l.line > 0) {
            write!(f, "{}:{}: ", loc.line, loc.column)?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

// === impl Value ===

impl Value {
    /// A short name of the YAML type, for "expected X, found Y" messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "nothing",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Int(i64::try_from(v).unwrap_or(i64::MAX)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry()? {
            entries.push(entry);
        }
        Ok(Value::Map(entries))
    }
}

/// Parses YAML text into a located tree. A syntax error (or a duplicate
/// key) ends parsing, so it is the one problem returned.
pub fn parse(text: &str) -> Result<Node, Problem> {
    if text.trim().is_empty() {
        let nowhere = serde_saphyr::Location::UNKNOWN;
        return Ok(Spanned::new(Value::Map(Vec::new()), nowhere, nowhere));
    }
    serde_saphyr::from_str::<Node>(text).map_err(|e| {
        let loc = e.location().map(|l| Loc {
            line: l.line(),
            column: l.column(),
        });
        // The error's Display repeats the location and a source snippet;
        // the first line without its "line N column M: " prefix is the message.
        let rendered = e.to_string();
        let first = rendered.lines().next().unwrap_or("invalid YAML");
        let first = first.strip_prefix("error: ").unwrap_or(first);
        let message = match first.split_once(": ") {
            Some((prefix, rest)) if prefix.starts_with("line ") => rest,
            _ => first,
        };
        let mut message = format!("invalid YAML: {}", message.trim_end_matches(','));
        let line = loc.and_then(|l| text.lines().nth(l.line.saturating_sub(1) as usize));
        if message.contains("flow") && line.is_some_and(|l| l.contains('{')) {
            message.push_str(
                " (hint: inside [a, b] or {k: v}, quote items that contain { or }, \
                 e.g. [\"GET /items/{id}\"], or write the list with one `- item` per line)",
            );
        }
        Problem {
            loc,
            path: String::new(),
            message,
        }
    })
}

/// The location of a node.
pub fn loc_of(node: &Node) -> Loc {
    Loc {
        line: node.referenced.line(),
        column: node.referenced.column(),
    }
}

// === impl MapReader ===

impl<'a> MapReader<'a> {
    /// Starts reading `node` as a mapping. `null` reads as an empty mapping;
    /// anything else that is not a mapping is a problem and yields `None`.
    pub fn new(node: &'a Node, path: &str, p: &mut Problems) -> Option<Self> {
        let entries = match &node.value {
            Value::Null => Vec::new(),
            Value::Map(entries) => {
                let mut out = Vec::with_capacity(entries.len());
                for (k, v) in entries {
                    match &k.value {
                        Value::Str(s) => out.push((s.as_str(), k, v, false)),
                        other => p.at(
                            Some(k),
                            path,
                            format!("keys must be strings, found {}", other.kind()),
                        ),
                    }
                }
                out
            }
            other => {
                p.at(
                    Some(node),
                    path,
                    format!("expected a mapping, found {}", other.kind()),
                );
                return None;
            }
        };
        Some(Self {
            path: path.to_string(),
            entries,
        })
    }

    /// The value under `key`, if present (an explicit `null` counts as absent).
    pub fn get(&mut self, key: &str) -> Option<&'a Node> {
        let entry = self.entries.iter_mut().find(|(k, ..)| *k == key)?;
        entry.3 = true;
        match entry.2.value {
            Value::Null => None,
            _ => Some(entry.2),
        }
    }

    /// The dotted path of a child key, for problem messages.
    pub fn child(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// Reports every key that no `get` asked for, naming the keys that exist.
    pub fn finish(self, known: &[&str], p: &mut Problems) {
        for (key, key_node, _, used) in &self.entries {
            if *used {
                continue;
            }
            let hint = match suggest(key, known) {
                Some(s) => format!("; did you mean `{s}`?"),
                None => format!("; expected one of: {}", known.join(", ")),
            };
            p.at(
                Some(key_node),
                &self.child(key),
                format!("unknown key `{key}`{hint}"),
            );
        }
    }
}

/// The known key closest to `key`, when it is close enough to be a typo.
fn suggest<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests;
