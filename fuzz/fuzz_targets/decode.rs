//! Entry decoding: any bytes from the store decode to a record or to
//! nothing, never a panic; a record re-encodes to bytes that decode to the
//! same record.
#![no_main]

use bytes::Bytes;
use cachecar::cache::codec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(record) = codec::decode(Bytes::copy_from_slice(data)) {
        let again = codec::decode(Bytes::from(codec::encode(&record))).expect("a re-encoded record decodes");
        assert_eq!(codec::encode(&again), codec::encode(&record));
    }
});
