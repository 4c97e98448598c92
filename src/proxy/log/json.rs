//! The access log as JSON lines formatted here, in one pass into a reused
//! buffer, and handed to the process's log writer (the thread and queue
//! every log line goes through) instead of through the subscriber's
//! formatter, which costs a field visitor, a map and a timestamp formatter
//! per line. Same keys and values as the subscriber writes for the event;
//! used when the binary logs JSON (`--log-format json`).

use std::cell::RefCell;
use std::io::Write as _;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing_appender::non_blocking::NonBlocking;

/// The process's log writer, when access lines are written here.
static WRITER: OnceLock<NonBlocking> = OnceLock::new();

/// Formats JSON access lines here and writes them to `writer` (the
/// process's log writer) instead of through the subscriber: for
/// `--log-format json`, once, before traffic.
pub fn write_access_log_to(writer: NonBlocking) {
    let _ = WRITER.set(writer);
}

/// The writer, if access lines go to it and the log filter lets them
/// through (the filter is fixed for the process, so asked once).
pub(super) fn writer() -> Option<&'static NonBlocking> {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    let writer = WRITER.get()?;
    let enabled = *ENABLED
        .get_or_init(|| tracing::enabled!(target: "cachecar::access", tracing::Level::INFO));
    enabled.then_some(writer)
}

/// Builds one line in the thread's buffer and writes it whole.
pub(super) fn write_line(writer: &NonBlocking, fill: impl FnOnce(&mut Line<'_>)) {
    thread_local! {
        static BUFFER: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
    }
    BUFFER.with_borrow_mut(|buf| {
        buf.clear();
        buf.extend_from_slice(b"{\"timestamp\":\"");
        timestamp(buf, SystemTime::now());
        buf.extend_from_slice(b"\",\"level\":\"INFO\",\"target\":\"cachecar::access\"");
        fill(&mut Line(buf));
        buf.extend_from_slice(b"}\n");
        // One message per line: the writer never splits or interleaves it.
        let _ = writer.clone().write_all(buf);
    });
}

/// The fields of a line being written.
pub(super) struct Line<'a>(&'a mut Vec<u8>);

impl Line<'_> {
    /// `"key":"value"`, escaped.
    pub(super) fn str(&mut self, key: &str, value: &str) {
        self.key(key);
        self.0.push(b'"');
        escape(self.0, value);
        self.0.push(b'"');
    }

    /// `"key":"value"` of a value's `Display`, escaped, without allocating.
    pub(super) fn display(&mut self, key: &str, value: &dyn std::fmt::Display) {
        use std::fmt::Write as _;
        thread_local! {
            static SCRATCH: RefCell<String> = RefCell::new(String::with_capacity(64));
        }
        SCRATCH.with_borrow_mut(|scratch| {
            scratch.clear();
            let _ = write!(scratch, "{value}");
            self.str(key, scratch);
        });
    }

    /// `"key":value`.
    pub(super) fn num(&mut self, key: &str, value: u64) {
        self.key(key);
        self.0
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    /// `"key":"address"`: an IPv4 address written octet by octet, as
    /// `Display` writes it but without the formatting machinery.
    pub(super) fn ip(&mut self, key: &str, ip: std::net::IpAddr) {
        let std::net::IpAddr::V4(v4) = ip else {
            return self.display(key, &ip);
        };
        self.key(key);
        self.0.push(b'"');
        for (i, octet) in v4.octets().into_iter().enumerate() {
            if i > 0 {
                self.0.push(b'.');
            }
            self.0
                .extend_from_slice(itoa::Buffer::new().format(octet).as_bytes());
        }
        self.0.push(b'"');
    }

    /// The string when there is one; nothing otherwise.
    pub(super) fn opt_str(&mut self, key: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.str(key, v);
        }
    }

    /// The number when there is one; nothing otherwise.
    pub(super) fn opt_num(&mut self, key: &str, value: Option<u64>) {
        if let Some(v) = value {
            self.num(key, v);
        }
    }

    fn key(&mut self, key: &str) {
        self.0.extend_from_slice(b",\"");
        self.0.extend_from_slice(key.as_bytes());
        self.0.extend_from_slice(b"\":");
    }
}

/// `s` as the inside of a JSON string (RFC 8259 §7): quotes, backslashes
/// and control characters escaped; the rest as is (it is UTF-8 already).
fn escape(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    // Almost every field needs nothing escaped: one pass without early
    // exit (which the compiler can vectorize), then a single copy.
    let special = |b: u8| b < 0x20 || b == b'"' || b == b'\\' || b == 0x7f;
    if !bytes.iter().fold(false, |any, &b| any | special(b)) {
        out.extend_from_slice(bytes);
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            0..=0x1f | 0x7f => b'u',
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.push(b'\\');
        out.push(short);
        if short == b'u' {
            out.extend_from_slice(b"00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// RFC 3339 in UTC with microseconds, as the subscriber writes it:
/// `2026-12-04T22:57:10.501405Z`.
fn timestamp(out: &mut Vec<u8>, now: SystemTime) {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil(days as i64);
    // Fixed-width fields, digit by digit: `write!` with padding cost more
    // than the rest of the line.
    let fields: [(u64, usize, u8); 7] = [
        (year.clamp(0, 9999) as u64, 4, b'-'),
        (u64::from(month), 2, b'-'),
        (u64::from(day), 2, b'T'),
        (rest / 3600, 2, b':'),
        (rest / 60 % 60, 2, b':'),
        (rest % 60, 2, b'.'),
        (u64::from(since.subsec_micros()), 6, b'Z'),
    ];
    for (value, width, then) in fields {
        push_digits(out, value, width);
        out.push(then);
    }
}

/// `value` as exactly `width` decimal digits, zero-padded (it must fit).
fn push_digits(out: &mut Vec<u8>, value: u64, width: usize) {
    let start = out.len();
    out.resize(start + width, b'0');
    let mut v = value;
    for slot in out[start..].iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn strings_from_clients_stay_inside_their_field() {
        let hostile = "a\"b\\c\nd\re\tf\u{1}g\u{7f}h\u{e9}\u{2028}";
        let mut buf = b"{\"first\":1".to_vec();
        let mut line = Line(&mut buf);
        line.str("path", hostile);
        line.opt_str("none", None);
        line.opt_num("bytes", Some(12));
        line.ip("client", std::net::Ipv4Addr::LOCALHOST.into());
        line.ip("v4", std::net::Ipv4Addr::new(10, 200, 0, 255).into());
        line.ip("v6", "2001:db8::1".parse().unwrap());
        line.display("id", &"x\"y");
        buf.push(b'}');
        let parsed: serde_json::Value = serde_json::from_slice(&buf).expect("valid JSON");
        assert_eq!(parsed["path"], hostile);
        assert_eq!(parsed["bytes"], 12);
        assert_eq!(
            (parsed["client"].as_str(), parsed["id"].as_str()),
            (Some("127.0.0.1"), Some("x\"y"))
        );
        assert_eq!(
            (parsed["v4"].as_str(), parsed["v6"].as_str()),
            (Some("10.200.0.255"), Some("2001:db8::1"))
        );
        assert!(parsed.get("none").is_none());
    }

    #[test]
    fn timestamps_are_rfc3339_with_microseconds() {
        let at = |secs: u64, micros: u64| {
            let mut out = Vec::new();
            let t = UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros);
            timestamp(&mut out, t);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(at(951_782_400, 7), "2000-02-29T00:00:00.000007Z");
        assert_eq!(at(1_796_425_030, 501_405), "2026-12-04T22:57:10.501405Z");
        assert_eq!(at(4_107_542_399, 999_999), "2100-02-28T23:59:59.999999Z");
    }
}
