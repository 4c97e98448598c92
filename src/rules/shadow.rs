//! Shadow mode (docs/invalidation.md, "Shadow mode"): a route that looks
//! up and fills the cache as it would, but answers every request from the
//! app, and compares what the cache would have served with what the app
//! answered. This module holds the route's mode and the comparison, pure.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, StatusCode, header};
use serde_json::Value;

/// `mode` of a route.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Serve from the cache.
    #[default]
    Cache,
    /// Answer from the app; fill and compare only.
    Shadow,
}

/// `shadow:` of a route: what a comparison looks at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShadowSpec {
    /// Response headers whose values must match.
    pub headers: Vec<HeaderName>,
    /// JSON fields left out of the body comparison, each a path of object
    /// keys (`meta.generated_at`); a path goes through arrays element by
    /// element.
    pub ignore_json_fields: Vec<Vec<Box<str>>>,
}

/// The headers compared unless a route says otherwise: those that change
/// what the body means.
pub const DEFAULT_SHADOW_HEADERS: [HeaderName; 4] = [
    header::CONTENT_TYPE,
    header::CONTENT_ENCODING,
    header::CONTENT_LANGUAGE,
    header::LOCATION,
];

/// One side of a comparison: a status, its headers, and the body when
/// there is one to compare (not for HEAD).
pub struct Answer<'a> {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: &'a HeaderMap,
    /// The whole body, or `None` when bodies are not compared.
    pub body: Option<&'a Bytes>,
}

/// How what the cache would have served differs from what the app answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Difference {
    /// Another status.
    Status {
        /// The stored one.
        stored: u16,
        /// The app's.
        live: u16,
    },
    /// Another value of this header.
    Header(HeaderName),
    /// Another body (after leaving out the ignored JSON fields).
    Body,
}

impl Default for ShadowSpec {
    fn default() -> Self {
        Self {
            headers: DEFAULT_SHADOW_HEADERS.to_vec(),
            ignore_json_fields: Vec::new(),
        }
    }
}

impl ShadowSpec {
    /// The first difference between the stored answer and the app's, if any.
    pub fn compare(&self, stored: &Answer<'_>, live: &Answer<'_>) -> Option<Difference> {
        if stored.status != live.status {
            return Some(Difference::Status {
                stored: stored.status.as_u16(),
                live: live.status.as_u16(),
            });
        }
        for name in &self.headers {
            if !stored
                .headers
                .get_all(name)
                .iter()
                .eq(live.headers.get_all(name))
            {
                return Some(Difference::Header(name.clone()));
            }
        }
        match (stored.body, live.body) {
            (Some(a), Some(b)) if !self.same_body(a, b) => Some(Difference::Body),
            _ => None,
        }
    }

    /// Equal bytes, or, with fields to ignore, equal JSON without them.
    fn same_body(&self, a: &Bytes, b: &Bytes) -> bool {
        if a == b {
            return true;
        }
        if self.ignore_json_fields.is_empty() {
            return false;
        }
        let (Ok(mut a), Ok(mut b)) = (
            serde_json::from_slice::<Value>(a),
            serde_json::from_slice::<Value>(b),
        ) else {
            return false;
        };
        for path in &self.ignore_json_fields {
            remove(&mut a, path);
            remove(&mut b, path);
        }
        a == b
    }
}

/// Removes the field at `path` from `value`, through arrays element by
/// element.
fn remove(value: &mut Value, path: &[Box<str>]) {
    match value {
        Value::Array(items) => items.iter_mut().for_each(|v| remove(v, path)),
        Value::Object(map) => match path {
            [] => {}
            [last] => {
                map.remove(&**last);
            }
            [first, rest @ ..] => {
                if let Some(inner) = map.get_mut(&**first) {
                    remove(inner, rest);
                }
            }
        },
        _ => {}
    }
}

/// `meta.generated_at` as a path of keys.
///
/// # Errors
///
/// An empty path or an empty key.
pub fn json_path(text: &str) -> Result<Vec<Box<str>>, String> {
    let keys: Vec<Box<str>> = text.split('.').map(Into::into).collect();
    if keys.iter().any(|k| k.is_empty()) {
        return Err(format!(
            "`{text}` is not a field path: object keys joined with `.`, e.g. `meta.generated_at`"
        ));
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn answer<'a>(status: u16, headers: &'a HeaderMap, body: &'a Bytes) -> Answer<'a> {
        Answer {
            status: StatusCode::from_u16(status).unwrap(),
            headers,
            body: Some(body),
        }
    }

    #[test]
    fn status_headers_and_body_are_compared_in_turn() {
        let spec = ShadowSpec::default();
        let mut json = HeaderMap::new();
        json.insert("content-type", HeaderValue::from_static("application/json"));
        let text = HeaderMap::new();
        let (a, b) = (Bytes::from_static(b"{}"), Bytes::from_static(b"[]"));
        assert_eq!(
            spec.compare(&answer(200, &json, &a), &answer(200, &json, &a)),
            None
        );
        assert_eq!(
            spec.compare(&answer(200, &json, &a), &answer(404, &json, &a)),
            Some(Difference::Status {
                stored: 200,
                live: 404
            })
        );
        assert_eq!(
            spec.compare(&answer(200, &json, &a), &answer(200, &text, &a)),
            Some(Difference::Header(header::CONTENT_TYPE))
        );
        assert_eq!(
            spec.compare(&answer(200, &json, &a), &answer(200, &json, &b)),
            Some(Difference::Body)
        );
        let head = Answer {
            body: None,
            ..answer(200, &json, &b)
        };
        assert_eq!(
            spec.compare(&answer(200, &json, &a), &head),
            None,
            "HEAD: no body"
        );
    }

    #[test]
    fn ignored_json_fields_are_left_out_even_inside_arrays() {
        let spec = ShadowSpec {
            ignore_json_fields: vec![
                json_path("generated_at").unwrap(),
                json_path("items.seen").unwrap(),
            ],
            ..ShadowSpec::default()
        };
        let h = HeaderMap::new();
        let a = Bytes::from(r#"{"generated_at":1,"items":[{"id":1,"seen":5}]}"#);
        let b = Bytes::from(r#"{"generated_at":2,"items":[{"id":1,"seen":9}]}"#);
        let c = Bytes::from(r#"{"generated_at":2,"items":[{"id":2,"seen":9}]}"#);
        assert_eq!(
            spec.compare(&answer(200, &h, &a), &answer(200, &h, &b)),
            None
        );
        assert_eq!(
            spec.compare(&answer(200, &h, &a), &answer(200, &h, &c)),
            Some(Difference::Body)
        );
        let not_json = Bytes::from_static(b"generated_at=1");
        assert_eq!(
            spec.compare(&answer(200, &h, &a), &answer(200, &h, &not_json)),
            Some(Difference::Body)
        );
        assert!(json_path("a..b").is_err() && json_path("").is_err());
    }
}
