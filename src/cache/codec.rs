//! The versioned binary encoding of stored records, for stores outside the
//! process (Redis; docs/architecture.md, "Redis layout").
//!
//! Layout: magic `CC`, format version, record kind, then fields in a fixed
//! order, integers big-endian, byte strings length-prefixed; the body comes
//! last and is decoded as a slice of the value (no copy). A value that does
//! not decode exactly (wrong magic or version, truncated, trailing bytes,
//! an invalid header) is `None`: a miss, never an error or a body.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use super::headers::{SERVED_EXTRA, compact};
use super::{Entry, Freshness, KeyHash, Record, Tags, Token, Variants};

const MAGIC: &[u8; 2] = b"CC";
/// Bumped whenever the layout changes; older values then read as misses.
const VERSION: u8 = 2;
const KIND_RESPONSE: u8 = 1;
const KIND_VARIANTS: u8 = 2;

/// Encodes a record.
pub fn encode(record: &Record) -> Vec<u8> {
    let mut out = BytesMut::with_capacity(match record {
        Record::Response(e) => 256 + e.body.len() + e.headers.len() * 48,
        Record::Variants(v) => 64 + v.known.len() * 32,
    });
    out.put_slice(MAGIC);
    out.put_u8(VERSION);
    match record {
        Record::Response(e) => {
            out.put_u8(KIND_RESPONSE);
            encode_entry(e, &mut out);
        }
        Record::Variants(v) => {
            out.put_u8(KIND_VARIANTS);
            out.put_slice(&v.key.0);
            put_time(&mut out, v.keep_until);
            put_len(&mut out, v.names.len());
            for name in &v.names {
                put_bytes(&mut out, name.as_str().as_bytes());
            }
            put_len(&mut out, v.known.len());
            for k in &v.known {
                out.put_slice(&k.0);
            }
        }
    }
    out.to_vec()
}

fn encode_entry(e: &Entry, out: &mut BytesMut) {
    let f = &e.freshness;
    out.put_slice(&e.key.0);
    out.put_u16(e.status.as_u16());
    for t in [
        e.stored_at,
        f.fresh_until,
        f.stale_while_revalidate_until,
        f.stale_if_error_until,
        f.keep_until,
    ] {
        put_time(out, t);
    }
    out.put_u64(f.initial_age.as_millis() as u64);
    out.put_u8(u8::from(f.must_revalidate) | u8::from(f.shareable_with_auth) << 1);
    put_len(out, e.generations.len());
    for g in &e.generations {
        out.put_u64(*g);
    }
    // Tags, then their generations: an unstamped entry (which no store
    // should write) has fewer generations than tags and reads as a miss.
    put_len(out, e.tags.tokens.len());
    for tag in e.tags.names() {
        put_bytes(out, tag.as_bytes());
    }
    put_len(out, e.tags.generations.len());
    for g in &e.tags.generations {
        out.put_u64(*g);
    }
    put_len(out, e.vary.len());
    for (name, value) in &e.vary {
        put_bytes(out, name.as_str().as_bytes());
        match value {
            Some(v) => {
                out.put_u8(1);
                put_bytes(out, v.as_bytes());
            }
            None => out.put_u8(0),
        }
    }
    put_len(out, e.headers.len());
    for (name, value) in &e.headers {
        put_bytes(out, name.as_str().as_bytes());
        put_bytes(out, value.as_bytes());
    }
    out.put_u32(e.body.len() as u32);
    out.put_slice(&e.body);
}

/// Decodes a record; `None` for anything that is not exactly a record of
/// this format version.
pub fn decode(value: Bytes) -> Option<Record> {
    let mut r = Reader(value);
    if r.take(2)?.as_ref() != MAGIC || r.u8()? != VERSION {
        return None;
    }
    let record = match r.u8()? {
        KIND_RESPONSE => Record::Response(Arc::new(decode_entry(&mut r)?)),
        KIND_VARIANTS => {
            let key = r.key()?;
            let keep_until = r.time()?;
            let names = (0..r.len()?)
                .map(|_| HeaderName::from_bytes(&r.bytes()?).ok())
                .collect::<Option<Vec<_>>>()?;
            let known = (0..r.len()?).map(|_| r.key()).collect::<Option<Vec<_>>>()?;
            Record::Variants(Arc::new(Variants {
                key,
                names,
                known,
                keep_until,
            }))
        }
        _ => return None,
    };
    r.0.is_empty().then_some(record)
}

fn decode_entry(r: &mut Reader) -> Option<Entry> {
    let key = r.key()?;
    let status = StatusCode::from_u16(r.u16()?).ok()?;
    let stored_at = r.time()?;
    let fresh_until = r.time()?;
    let stale_while_revalidate_until = r.time()?;
    let stale_if_error_until = r.time()?;
    let keep_until = r.time()?;
    let initial_age = Duration::from_millis(r.u64()?);
    let flags = r.u8()?;
    let freshness = Freshness {
        initial_age,
        fresh_until,
        stale_while_revalidate_until,
        stale_if_error_until,
        must_revalidate: flags & 1 != 0,
        keep_until,
        shareable_with_auth: flags & 2 != 0,
    };
    let generations = (0..r.len()?).map(|_| r.u64()).collect::<Option<Vec<_>>>()?;
    let tags = decode_tags(r)?;
    let vary = decode_vary(r)?;
    let headers = decode_headers(r)?;
    let body_len = r.u32()? as usize;
    let body = r.take(body_len)?;
    Some(Entry {
        key,
        status,
        headers,
        body,
        stored_at,
        freshness,
        vary,
        generations,
        tags,
    })
}

fn decode_tags(r: &mut Reader) -> Option<Tags> {
    let tokens = (0..r.len()?)
        .map(|_| Some(Token::tag(std::str::from_utf8(&r.bytes()?).ok()?)))
        .collect::<Option<Vec<Token>>>()?;
    let generations = (0..r.len()?).map(|_| r.u64()).collect::<Option<Vec<_>>>()?;
    (generations.len() == tokens.len()).then_some(Tags {
        tokens,
        generations,
        epoch: None,
    })
}

fn decode_vary(r: &mut Reader) -> Option<Vec<(HeaderName, Option<HeaderValue>)>> {
    let mut vary = Vec::new();
    for _ in 0..r.len()? {
        let name = HeaderName::from_bytes(&r.bytes()?).ok()?;
        let value = match r.u8()? {
            0 => None,
            1 => Some(HeaderValue::from_maybe_shared(r.bytes()?).ok()?),
            _ => return None,
        };
        vary.push((name, value));
    }
    Some(vary)
}

fn decode_headers(r: &mut Reader) -> Option<HeaderMap> {
    let count = r.len()?;
    let mut headers = HeaderMap::with_capacity(count + SERVED_EXTRA);
    for _ in 0..count {
        let name = HeaderName::from_bytes(&r.bytes()?).ok()?;
        let value = HeaderValue::from_maybe_shared(r.bytes()?).ok()?;
        headers.append(name, value);
    }
    Some(compact(&headers))
}

fn put_len(out: &mut BytesMut, n: usize) {
    out.put_u32(n as u32);
}

fn put_bytes(out: &mut BytesMut, b: &[u8]) {
    put_len(out, b.len());
    out.put_slice(b);
}

fn put_time(out: &mut BytesMut, t: SystemTime) {
    out.put_u64(t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64);
}

/// Bounds-checked reading; every method is `None` past the end.
struct Reader(Bytes);

impl Reader {
    fn take(&mut self, n: usize) -> Option<Bytes> {
        (self.0.len() >= n).then(|| self.0.split_to(n))
    }
    fn u8(&mut self) -> Option<u8> {
        (!self.0.is_empty()).then(|| self.0.get_u8())
    }
    fn u16(&mut self) -> Option<u16> {
        (self.0.len() >= 2).then(|| self.0.get_u16())
    }
    fn u32(&mut self) -> Option<u32> {
        (self.0.len() >= 4).then(|| self.0.get_u32())
    }
    fn u64(&mut self) -> Option<u64> {
        (self.0.len() >= 8).then(|| self.0.get_u64())
    }
    /// A count, refused when it could not possibly fit in what is left
    /// (so a corrupt length cannot make us allocate gigabytes).
    fn len(&mut self) -> Option<usize> {
        let n = self.u32()? as usize;
        (n <= self.0.len()).then_some(n)
    }
    fn bytes(&mut self) -> Option<Bytes> {
        let n = self.len()?;
        self.take(n)
    }
    fn key(&mut self) -> Option<KeyHash> {
        let b = self.take(32)?;
        let mut k = [0u8; 32];
        k.copy_from_slice(&b);
        Some(KeyHash(k))
    }
    fn time(&mut self) -> Option<SystemTime> {
        UNIX_EPOCH.checked_add(Duration::from_millis(self.u64()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        let now = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let mut headers = HeaderMap::new();
        headers.append("content-type", HeaderValue::from_static("application/json"));
        headers.append("x-multi", HeaderValue::from_static("1"));
        headers.append("x-multi", HeaderValue::from_static("2"));
        Entry {
            key: KeyHash([7; 32]),
            status: StatusCode::NOT_FOUND,
            headers,
            body: Bytes::from_static(b"{\"hello\":\"world\"}"),
            stored_at: now,
            freshness: Freshness {
                initial_age: Duration::from_secs(3),
                fresh_until: now + Duration::from_secs(60),
                stale_while_revalidate_until: now + Duration::from_secs(70),
                stale_if_error_until: now + Duration::from_secs(80),
                must_revalidate: true,
                keep_until: now + Duration::from_secs(380),
                shareable_with_auth: true,
            },
            vary: vec![
                (
                    HeaderName::from_static("accept-language"),
                    Some(HeaderValue::from_static("fr")),
                ),
                (HeaderName::from_static("x-tenant"), None),
            ],
            generations: vec![1, u64::MAX, 42],
            tags: Tags {
                tokens: vec![Token::tag("docs"), Token::tag("user:7")],
                generations: vec![3, 9],
                epoch: None,
            },
        }
    }

    #[test]
    fn responses_round_trip_exactly() {
        let e = entry();
        let bytes = encode(&Record::Response(Arc::new(e.clone())));
        let Some(Record::Response(back)) = decode(Bytes::from(bytes)) else {
            panic!("decodes");
        };
        assert_eq!(back.key, e.key);
        assert_eq!(back.status, e.status);
        assert_eq!(back.headers, e.headers);
        assert_eq!(back.body, e.body);
        assert_eq!(back.stored_at, e.stored_at);
        assert_eq!(back.freshness, e.freshness);
        assert_eq!(
            (
                back.freshness.must_revalidate,
                back.freshness.shareable_with_auth
            ),
            (true, true)
        );
        assert_eq!(back.vary, e.vary);
        assert_eq!(back.generations, e.generations);
        assert_eq!(back.tags, e.tags);
    }

    #[test]
    fn unstamped_tags_never_read_back() {
        let mut e = entry();
        e.tags = Tags::pending(&["a".into()], 5);
        let bytes = encode(&Record::Response(Arc::new(e)));
        assert!(decode(Bytes::from(bytes)).is_none());
    }

    #[test]
    fn variant_indexes_round_trip() {
        let v = Variants {
            key: KeyHash([1; 32]),
            names: vec![HeaderName::from_static("accept-encoding")],
            known: vec![KeyHash([2; 32]), KeyHash([3; 32])],
            keep_until: UNIX_EPOCH + Duration::from_secs(5),
        };
        let bytes = encode(&Record::Variants(Arc::new(v.clone())));
        let Some(Record::Variants(back)) = decode(Bytes::from(bytes)) else {
            panic!("decodes");
        };
        assert_eq!(*back, v);
    }

    #[test]
    fn anything_else_is_a_miss_never_a_panic() {
        let good = encode(&Record::Response(Arc::new(entry())));
        assert!(decode(Bytes::new()).is_none());
        assert!(decode(Bytes::from_static(b"not a record")).is_none());
        let mut other_version = good.clone();
        other_version[2] = VERSION + 1;
        assert!(decode(Bytes::from(other_version)).is_none());
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(decode(Bytes::from(trailing)).is_none());
        for cut in [3, 10, 40, 100, good.len() - 1] {
            assert!(
                decode(Bytes::copy_from_slice(&good[..cut])).is_none(),
                "cut at {cut}"
            );
        }
        // Every single-byte corruption either decodes to something or is a
        // miss; it never panics or allocates without bound.
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0xff;
            let _ = decode(Bytes::from(bad));
        }
    }
}
