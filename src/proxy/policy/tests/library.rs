//! `explicit_ttl` against the library it answers for.

use super::*;

/// `Cache-Control` field lines of the responses tried.
const CACHE_CONTROLS: &[&[&str]] = &[
    &["max-age=60"],
    &["max-age=0"],
    &["max-age=60, public"],
    &["public, max-age=60, must-revalidate"],
    &["s-maxage=30, max-age=60"],
    &["max-age=60, s-maxage=300"],
    &["s-maxage=10"],
    &["s-maxage=0, max-age=60"],
    &["max-age=60, stale-while-revalidate=5, stale-if-error=20"],
    &["max-age=60, immutable", "no-transform"],
    &["max-age=60", "max-age=30"],
    &["max-age=60, max-age=30"],
    &["MAX-AGE=60, Public"],
    &["max-age=\"60\""],
    &["max-age=99999999999"],
    &["max-age=60, s-maxage=x"],
    &["max-age=60, s-maxage"],
    &["max-age=60, proxy-revalidate"],
    &["max-age=60, private"],
    &["max-age=60, private=\"x-a\""],
    &["max-age=60, no-cache"],
    &["max-age=60, no-cache=\"x-a\""],
    &["max-age=60, must-understand"],
    &["max-age=60, community=\"uci\""],
    &["max-age =60"],
    &["public"],
    &[],
];

/// `Age` values of the responses tried.
const AGES: &[Option<&str>] = &[
    None,
    Some("10"),
    Some("60"),
    Some("600"),
    Some("x"),
    Some(" 5"),
];

/// Request headers tried.
const REQUESTS: &[&[(&str, &str)]] = &[
    &[],
    &[("cache-control", "max-age=0")],
    &[("pragma", "no-cache")],
    &[("authorization", "Bearer x")],
];

/// Other response headers tried.
const EXTRAS: &[&[(&str, &str)]] = &[
    &[],
    &[("expires", "Thu, 01 Jan 1970 00:00:00 GMT")],
    &[("pragma", "no-cache")],
    &[
        ("date", "Tue, 14 Nov 2023 22:13:20 GMT"),
        ("last-modified", "Mon, 13 Nov 2023 22:13:20 GMT"),
    ],
];

/// The response headers of one case.
fn response(lines: &[&str], age: Option<&str>, extra: &[(&str, &str)]) -> HeaderMap {
    let mut response = header_map(extra);
    for line in lines {
        response.append(header::CACHE_CONTROL, HeaderValue::from_str(line).unwrap());
    }
    if let Some(age) = age {
        response.insert(header::AGE, HeaderValue::from_str(age).unwrap());
    }
    response
}

/// Whether `explicit_ttl` answered the case, having checked that the
/// library gives the same lifetime where it does.
fn answered(route: &Route, response: &HeaderMap, request: &[(&str, &str)], case: &str) -> bool {
    let canonical = cache_control::canonical(response, &[]);
    let uri: Uri = "/x".parse().unwrap();
    let req = header_map(request);
    let directives = RequestDirectives::parse(&req);
    let ex = Exchange {
        method: &Method::GET,
        uri: &uri,
        request: &req,
        directives: &directives,
        credentials: req.contains_key(header::AUTHORIZATION),
        sent_at: t0(),
        received_at: t0(),
    };
    let Some(ttl) = explicit_ttl(route, &ex, &canonical.headers, &canonical.directives) else {
        return false;
    };
    let library = library_lifetime(route, &ex, StatusCode::OK, &canonical.headers, true);
    assert_eq!(library, Ok(ttl), "{case}, request {request:?}");
    true
}

/// `explicit_ttl` answers for the library in the common case: wherever it
/// gives a lifetime, http-cache-semantics gives the same one.
#[test]
fn explicit_lifetimes_agree_with_the_library() {
    let (mut answers, mut left) = (0, 0);
    for name in ["public", "origin", "mine", "mine-private", "windows"] {
        let route = route(name);
        for lines in CACHE_CONTROLS {
            for age in AGES {
                for extra in EXTRAS {
                    let response = response(lines, *age, extra);
                    let case =
                        format!("route {name}, cache-control {lines:?}, age {age:?}, {extra:?}");
                    for request in REQUESTS {
                        if answered(&route, &response, request, &case) {
                            answers += 1;
                        } else {
                            left += 1;
                        }
                    }
                }
            }
        }
    }
    // Both kinds of case were met: the fast path answered many, and left
    // the others to the library.
    assert!(
        answers > 1000 && left > 1000,
        "answered {answers}, left {left}"
    );
}
