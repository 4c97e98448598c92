//! `${VAR}` and `${VAR:-default}` substitution, done on the file's text
//! before YAML parsing (docs/configuration.md).
//!
//! - `${VAR}` must be set; `${VAR:-default}` uses `default` when `VAR` is
//!   unset or empty; `$${` writes a literal `${`.
//! - Comments are left alone, so a commented-out line may name a variable
//!   that is not set.
//! - A value may not contain a line break: it would move every line number
//!   after it and could inject YAML structure.
//!
//! Substitution shifts columns on the lines it touches; [`ColumnMap`] maps a
//! column in the substituted text back to the file, so problems point at what
//! the operator wrote. The environment is passed in as a lookup function so
//! tests never touch the process environment.

use super::yaml::{Loc, Problem};

/// The substituted text and how to map its columns back to the file.
#[derive(Debug)]
pub(crate) struct Substituted {
    /// The text to parse.
    pub text: String,
    /// Column corrections for lines that had substitutions.
    pub columns: ColumnMap,
}

/// Per changed line (1-based), the substitutions on it.
#[derive(Debug, Default)]
pub(crate) struct ColumnMap {
    lines: Vec<(u64, Vec<Span>)>,
}

/// One substitution on a line, in 1-based character columns; ends exclusive.
#[derive(Clone, Copy, Debug)]
struct Span {
    out_start: u64,
    out_end: u64,
    file_start: u64,
    file_end: u64,
}

/// Substitutes `${...}` references in `text`, looking variables up with
/// `lookup`. Returns every bad reference at once.
///
/// # Errors
///
/// One problem per unset variable without a default, unterminated or
/// malformed reference, and value containing a line break.
pub(crate) fn substitute(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Substituted, Vec<Problem>> {
    let mut out = String::with_capacity(text.len());
    let mut columns = ColumnMap::default();
    let mut problems = Vec::new();
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let line_no = index as u64 + 1;
        let mut spans = Vec::new();
        substitute_line(line, line_no, lookup, &mut out, &mut spans, &mut problems);
        if !spans.is_empty() {
            columns.lines.push((line_no, spans));
        }
    }
    if problems.is_empty() {
        Ok(Substituted { text: out, columns })
    } else {
        Err(problems)
    }
}

fn substitute_line(
    line: &str,
    line_no: u64,
    lookup: &dyn Fn(&str) -> Option<String>,
    out: &mut String,
    spans: &mut Vec<Span>,
    problems: &mut Vec<Problem>,
) {
    let (code, comment) = line.split_at(comment_start(line).unwrap_or(line.len()));
    let mut w = Writer {
        out,
        spans,
        file_col: 1,
        out_col: 1,
    };
    let mut rest = code;
    while let Some(pos) = rest.find('$') {
        let (before, at) = rest.split_at(pos);
        w.copy(before);
        if let Some(after) = at.strip_prefix("$${") {
            w.replace("$${", "${");
            rest = after;
            continue;
        }
        let Some(body) = at.strip_prefix("${") else {
            w.copy("$");
            rest = &at[1..];
            continue;
        };
        let loc = Some(Loc {
            line: line_no,
            column: w.file_col,
        });
        let Some(close) = body.find('}') else {
            problems.push(problem(loc, "unterminated `${`: add the closing `}`"));
            w.out.push_str(at);
            return;
        };
        let value = value_of(&body[..close], lookup, loc, problems);
        let consumed = 2 + close + 1;
        w.replace(&at[..consumed], &value);
        rest = &at[consumed..];
    }
    w.out.push_str(rest);
    w.out.push_str(comment);
}

/// Writes one line's substituted text, noting where it differs from the
/// file's; columns are 1-based characters.
struct Writer<'a> {
    out: &'a mut String,
    spans: &'a mut Vec<Span>,
    file_col: u64,
    out_col: u64,
}

impl Writer<'_> {
    /// Copies `text` as it is.
    fn copy(&mut self, text: &str) {
        self.out.push_str(text);
        let n = text.chars().count() as u64;
        self.file_col += n;
        self.out_col += n;
    }

    /// Writes `value` where the file has `file_text`.
    fn replace(&mut self, file_text: &str, value: &str) {
        let file_len = file_text.chars().count() as u64;
        let out_len = value.chars().count() as u64;
        self.out.push_str(value);
        self.spans.push(Span {
            out_start: self.out_col,
            out_end: self.out_col + out_len,
            file_start: self.file_col,
            file_end: self.file_col + file_len,
        });
        self.file_col += file_len;
        self.out_col += out_len;
    }
}

/// The value of `${reference}`; empty, with a problem, when it has none or
/// it holds a line break.
fn value_of(
    reference: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    loc: Option<Loc>,
    problems: &mut Vec<Problem>,
) -> String {
    let value = resolve(reference, lookup).unwrap_or_else(|message| {
        problems.push(problem(loc, message));
        String::new()
    });
    if value.contains(['\n', '\r']) {
        problems.push(problem(
            loc,
            format!("the value of `${{{reference}}}` contains a line break, which is not allowed"),
        ));
    }
    value
}

/// Resolves the inside of one `${...}`.
fn resolve(reference: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let (name, default) = match reference.split_once(":-") {
        Some((name, default)) => (name, Some(default)),
        None => (reference, None),
    };
    if !is_var_name(name) {
        return Err(format!(
            "`${{{reference}}}` is not a valid reference: use `${{NAME}}` or `${{NAME:-default}}`"
        ));
    }
    match (lookup(name), default) {
        (Some(v), Some(d)) if v.is_empty() => Ok(d.to_string()),
        (Some(v), _) => Ok(v),
        (None, Some(d)) => Ok(d.to_string()),
        (None, None) => Err(format!(
            "environment variable `{name}` is not set (write `${{{name}:-default}}` to make it optional)"
        )),
    }
}

fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Byte offset where a YAML comment starts on this line: a `#` at the start
/// or after whitespace, outside single- and double-quoted scalars.
fn comment_start(line: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    let mut prev = ' ';
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match quote {
            Some('"') if escaped => escaped = false,
            Some('"') if c == '\\' => escaped = true,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '#' && prev.is_whitespace() => return Some(i),
            None if (c == '"' || c == '\'') && (prev.is_whitespace() || "[{:,-".contains(prev)) => {
                quote = Some(c)
            }
            None => {}
        }
        prev = c;
    }
    None
}

fn problem(loc: Option<Loc>, message: impl Into<String>) -> Problem {
    Problem {
        loc,
        path: String::new(),
        message: message.into(),
    }
}

// === impl ColumnMap ===

impl ColumnMap {
    /// Maps a location in the substituted text back to the file. A column
    /// inside a substituted value maps to the start of its `${`.
    pub fn original(&self, loc: Loc) -> Loc {
        let Some((_, spans)) = self.lines.iter().find(|(l, _)| *l == loc.line) else {
            return loc;
        };
        let mut shift: i64 = 0;
        for span in spans {
            if loc.column < span.out_start {
                break;
            }
            if loc.column < span.out_end {
                return Loc {
                    line: loc.line,
                    column: span.file_start,
                };
            }
            shift = span.file_end as i64 - span.out_end as i64;
        }
        Loc {
            line: loc.line,
            column: (loc.column as i64 + shift).max(1) as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("s3cret".into()),
            "EMPTY" => Some(String::new()),
            "NL" => Some("a\nb".into()),
            _ => None,
        }
    }

    fn sub(text: &str) -> Result<String, Vec<String>> {
        substitute(text, &env)
            .map(|s| s.text)
            .map_err(|ps| ps.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn substitutes_set_default_and_escaped_references() {
        assert_eq!(sub("a: ${TOKEN}\n").unwrap(), "a: s3cret\n");
        assert_eq!(sub("a: ${UNSET:-dflt}\n").unwrap(), "a: dflt\n");
        assert_eq!(sub("a: ${EMPTY:-dflt}\n").unwrap(), "a: dflt\n");
        assert_eq!(sub("a: ${EMPTY}\n").unwrap(), "a: \n");
        assert_eq!(sub("a: ${UNSET:-}\n").unwrap(), "a: \n");
        assert_eq!(sub("a: $${TOKEN} $5\n").unwrap(), "a: ${TOKEN} $5\n");
    }

    #[test]
    fn comments_are_not_substituted() {
        assert_eq!(
            sub("a: 1 # ${UNSET}\n# ${ALSO_UNSET}\n").unwrap(),
            "a: 1 # ${UNSET}\n# ${ALSO_UNSET}\n"
        );
        assert_eq!(sub("a: \"x # ${TOKEN}\"\n").unwrap(), "a: \"x # s3cret\"\n");
    }

    #[test]
    fn every_bad_reference_is_reported_with_its_column() {
        let errs = sub("a: ${UNSET}\nb: x ${1BAD}\nc: ${NL}\nd: ${OPEN\n").unwrap_err();
        assert_eq!(errs.len(), 4, "{errs:?}");
        assert!(errs[0].starts_with("1:4: environment variable `UNSET` is not set"));
        assert!(errs[1].starts_with("2:6: `${1BAD}` is not a valid reference"));
        assert!(errs[2].starts_with("3:4: the value of `${NL}` contains a line break"));
        assert!(errs[3].starts_with("4:4: unterminated `${`"));
    }

    #[test]
    fn columns_map_back_to_the_file() {
        let s = substitute("k: ${TOKEN} x: ${UNSET:-abcdefgh} y\n", &env).unwrap();
        assert_eq!(s.text, "k: s3cret x: abcdefgh y\n");
        let at = |column| s.columns.original(Loc { line: 1, column }).column;
        assert_eq!(at(1), 1); // before any substitution
        assert_eq!(at(6), 4); // inside `s3cret` -> start of `${TOKEN}`
        assert_eq!(at(11), 13); // `x` after the first substitution
        assert_eq!(at(23), 35); // `y` after both
        assert_eq!(s.columns.original(Loc { line: 2, column: 5 }).column, 5);
    }
}
