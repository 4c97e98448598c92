//! The leaf readers: one scalar or list each, turned into a typed value.
//! Each returns `None` after recording a problem, so callers can keep
//! going.

use std::time::Duration;

use super::{Node, Problems, Value};

/// A string scalar. Numbers and booleans are accepted in their YAML spelling
/// only where a caller asks through [`scalar_text`].
pub fn string(node: &Node, path: &str, p: &mut Problems) -> Option<String> {
    match &node.value {
        Value::Str(s) => Some(s.clone()),
        other => {
            p.at(
                Some(node),
                path,
                format!("expected a string, found {}", other.kind()),
            );
            None
        }
    }
}

/// Any scalar as text: for values such as addresses that YAML may read as a
/// number.
pub fn scalar_text(node: &Node, path: &str, p: &mut Problems) -> Option<String> {
    match &node.value {
        Value::Str(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        other => {
            p.at(
                Some(node),
                path,
                format!("expected a single value, found {}", other.kind()),
            );
            None
        }
    }
}

/// A boolean (`true`/`false`).
pub fn boolean(node: &Node, path: &str, p: &mut Problems) -> Option<bool> {
    match &node.value {
        Value::Bool(b) => Some(*b),
        other => {
            p.at(
                Some(node),
                path,
                format!("expected true or false, found {}", other.kind()),
            );
            None
        }
    }
}

/// A non-negative integer no larger than `max`.
pub fn integer(node: &Node, path: &str, max: u64, p: &mut Problems) -> Option<u64> {
    let n = match &node.value {
        Value::Int(i) => u64::try_from(*i).ok(),
        Value::Str(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    match n {
        Some(n) if n <= max => Some(n),
        _ => {
            p.at(
                Some(node),
                path,
                format!("expected a whole number from 0 to {max}"),
            );
            None
        }
    }
}

/// A fraction from 0 to 1 inclusive (`0.1`, `1`, `0`).
pub fn fraction(node: &Node, path: &str, p: &mut Problems) -> Option<f64> {
    let f = match &node.value {
        Value::Float(f) => Some(*f),
        Value::Int(i) => Some(*i as f64),
        _ => None,
    };
    match f {
        Some(f) if (0.0..=1.0).contains(&f) => Some(f),
        _ => {
            p.at(Some(node), path, "expected a number from 0 to 1 (e.g. 0.1)");
            None
        }
    }
}

/// A duration such as `250ms`, `30s`, `5m`, `2h`, `1d` or `1h30m`.
pub fn duration(node: &Node, path: &str, p: &mut Problems) -> Option<Duration> {
    let text = match &node.value {
        Value::Str(s) => s.trim().to_string(),
        Value::Int(0) => return Some(Duration::ZERO),
        Value::Int(i) => {
            p.at(
                Some(node),
                path,
                format!("a duration needs a unit, e.g. `{i}s` or `{i}ms`"),
            );
            return None;
        }
        other => {
            p.at(
                Some(node),
                path,
                format!("expected a duration such as `30s`, found {}", other.kind()),
            );
            return None;
        }
    };
    match parse_duration(&text) {
        Ok(d) => Some(d),
        Err(why) => {
            p.at(
                Some(node),
                path,
                format!("invalid duration `{text}`: {why}"),
            );
            None
        }
    }
}

/// `n` of `unit`, `None` on overflow; `tail` is what follows, for the
/// message when the unit is missing.
fn duration_part(n: u64, unit: &str, tail: &str) -> Result<Option<Duration>, String> {
    let seconds = |k: u64| n.checked_mul(k).map(Duration::from_secs);
    Ok(match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => seconds(60),
        "h" => seconds(3_600),
        "d" => seconds(86_400),
        "" if tail.is_empty() => return Err(format!("`{n}` needs a unit; {EXAMPLES}")),
        "" => return Err(format!("unexpected `{tail}` after `{n}`; {EXAMPLES}")),
        "M" => {
            let days = n.saturating_mul(30);
            return Err(format!(
                "`M` could mean months or minutes: write `{n}m` for minutes or `{days}d` for days"
            ));
        }
        "y" | "Y" => {
            let days = n.saturating_mul(365);
            return Err(format!("years are not a unit here: write `{days}d`"));
        }
        "w" | "W" => {
            let days = n.saturating_mul(7);
            return Err(format!("weeks are not a unit here: write `{days}d`"));
        }
        other => return Err(format!("`{other}` is not a unit; {EXAMPLES}")),
    })
}

/// How durations are written, for messages.
const EXAMPLES: &str = "write it in ms, s, m, h or d, e.g. 250ms, 30s, 5m, 2h, 1d";

/// Parses a duration written with unambiguous units only: `ms`, `s`, `m`
/// (minutes), `h` and `d`, each after a whole number, several in a row
/// (`1h30m`). `M` (months, or minutes?), `y`, `w`, words and fractions are
/// refused with a suggestion: a cache lifetime off by a factor of 43,200
/// should not pass as valid.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    if text.is_empty() {
        return Err(EXAMPLES.into());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return Err(format!("expected a number at `{rest}`; {EXAMPLES}"));
        }
        let (number, tail) = rest.split_at(digits);
        let unit_len = tail.len()
            - tail
                .trim_start_matches(|c: char| c.is_ascii_alphabetic())
                .len();
        let (unit, tail) = tail.split_at(unit_len);
        let n: u64 = number
            .parse()
            .map_err(|_| format!("`{number}` is too large"))?;
        let part = duration_part(n, unit, tail)?;
        total = part
            .and_then(|d| total.checked_add(d))
            .ok_or_else(|| format!("`{text}` is too long a duration"))?;
        rest = tail;
    }
    Ok(total)
}

/// A size in bytes: a plain number, or a number with `B`, `KiB`, `MiB`,
/// `GiB` (powers of 1024) or `KB`, `MB`, `GB` (powers of 1000).
pub fn byte_size(node: &Node, path: &str, p: &mut Problems) -> Option<u64> {
    let parsed = match &node.value {
        Value::Int(i) => u64::try_from(*i).ok(),
        Value::Str(s) => parse_byte_size(s),
        _ => None,
    };
    if parsed.is_none() {
        p.at(
            Some(node),
            path,
            "expected a size such as `256MiB`, `64KiB` or a number of bytes",
        );
    }
    parsed
}

/// Parses `256MiB`-style sizes; see [`byte_size`].
pub fn parse_byte_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return None,
    };
    n.checked_mul(factor)
}

/// A list. `null` reads as empty; a single scalar is not accepted, so a
/// forgotten `-` is reported rather than guessed at.
pub fn list<'a>(node: &'a Node, path: &str, p: &mut Problems) -> Option<&'a [Node]> {
    match &node.value {
        Value::Seq(items) => Some(items),
        Value::Null => Some(&[]),
        other => {
            p.at(
                Some(node),
                path,
                format!("expected a list, found {}", other.kind()),
            );
            None
        }
    }
}

/// One of a fixed set of words.
pub fn one_of<T: Copy>(
    node: &Node,
    path: &str,
    choices: &[(&str, T)],
    p: &mut Problems,
) -> Option<T> {
    let text = string(node, path, p)?;
    match choices.iter().find(|(name, _)| *name == text) {
        Some((_, v)) => Some(*v),
        None => {
            let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
            p.at(
                Some(node),
                path,
                format!("`{text}` is not one of: {}", names.join(", ")),
            );
            None
        }
    }
}

#[cfg(test)]
mod duration_tests {
    use super::parse_duration;
    use crate::config::report::human;
    use std::time::Duration;

    #[test]
    fn durations_take_unambiguous_units_only() {
        let ok = [
            ("250ms", Duration::from_millis(250)),
            ("30s", Duration::from_secs(30)),
            ("5m", Duration::from_secs(300)),
            ("2h", Duration::from_secs(7_200)),
            ("1d", Duration::from_secs(86_400)),
            ("1h30m", Duration::from_secs(5_400)),
        ];
        for (text, d) in ok {
            assert_eq!(parse_duration(text), Ok(d), "{text}");
            assert_eq!(parse_duration(&human(d)), Ok(d), "{text} round trip");
        }
        for (text, hint) in [
            ("5M", "`5m` for minutes"),
            ("1y", "`365d`"),
            ("1w", "`7d`"),
            ("5 minutes", "unexpected ` minutes`"),
            ("5minutes", "`minutes` is not a unit"),
            ("1.5h", "unexpected `.5h`"),
            ("30", "needs a unit"),
            ("", "e.g. 250ms"),
        ] {
            let err = parse_duration(text).unwrap_err();
            assert!(err.contains(hint), "{text}: {err}");
        }
        assert_eq!(human(Duration::from_secs(75)), "1m15s");
        assert_eq!(human(Duration::ZERO), "0s");
    }
}
