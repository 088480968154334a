//! Packing: how a record's bytes are kept in sled — its JSON as it is, or deflated when large.
//!
//! sled keeps a page it has written in memory until that page's cache shard has seen enough
//! further accesses to evict it, and never evicts a shard's last page; in a record run a large
//! recording therefore stayed resident at full size (32 MB for a 15 MB body, twelve of them
//! 460 MB) however small the cache is set. Deflated, the same recording is 0.8-2.2 MB (JSON
//! of assignments compresses 14-39 times at level 1, in about 40 ms for 30 MB), on disk too.
//!
//! A packed record starts with [`DEFLATED`] (a plain one is a JSON object, which starts with
//! `{`), then its unpacked length (8 bytes, big-endian), then a zlib stream. Unpacking is
//! bounded by that length and by [`MAX_RECORD`], so a damaged or hostile database cannot
//! make one record expand without limit.

use std::borrow::Cow;
use std::io::{Read, Write};

/// Records at least this large are deflated; smaller ones gain too little to pay for it.
const DEFLATE_FROM: usize = 64 * 1024;
/// The first byte of a deflated record.
const DEFLATED: u8 = 0;
/// Most bytes one record may unpack to: well above the largest a run can write (two bodies
/// of `--max-body-size` and a response of `upstream::MAX_RESPONSE_BODY`, escaped).
const MAX_RECORD: u64 = 1 << 30;

/// A record's JSON as it is to be stored.
pub fn pack(record: Vec<u8>) -> Vec<u8> {
    if record.len() < DEFLATE_FROM {
        return record;
    }
    let mut out = Vec::with_capacity(record.len() / 8 + 64);
    out.push(DEFLATED);
    out.extend_from_slice(&(record.len() as u64).to_be_bytes());
    let mut z = flate2::write::ZlibEncoder::new(out, flate2::Compression::fast());
    match z.write_all(&record).and_then(|()| z.finish()) {
        Ok(packed) => packed,
        // Writing into memory does not fail; if it ever did, the record is kept as it is.
        Err(_) => record,
    }
}

/// A stored record's JSON, or why it cannot be had.
pub fn unpack(stored: &[u8]) -> Result<Cow<'_, [u8]>, String> {
    let Some((&DEFLATED, rest)) = stored.split_first() else {
        return Ok(Cow::Borrowed(stored));
    };
    let (len, stream) = rest
        .split_first_chunk::<8>()
        .ok_or("a deflated record without its length")?;
    let len = u64::from_be_bytes(*len);
    if len > MAX_RECORD {
        return Err(format!(
            "a deflated record claims {len} bytes, over the {MAX_RECORD}-byte limit"
        ));
    }
    let mut out = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    flate2::read::ZlibDecoder::new(stream)
        .take(len + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("a deflated record does not inflate: {e}"))?;
    if out.len() as u64 != len {
        return Err(format!(
            "a deflated record inflates to {} bytes, not the {len} it claims",
            out.len()
        ));
    }
    Ok(Cow::Owned(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_records_stay_as_they_are_and_large_ones_round_trip() {
        let small = br#"{"a":1}"#.to_vec();
        assert_eq!(pack(small.clone()), small);
        assert_eq!(unpack(&small).ok().as_deref(), Some(&small[..]));
        let large = format!(r#"{{"body":"{}"}}"#, "assignment ".repeat(20_000)).into_bytes();
        let packed = pack(large.clone());
        assert!(packed.len() * 10 < large.len(), "{}", packed.len());
        assert_eq!(unpack(&packed).ok().as_deref(), Some(&large[..]));
    }

    #[test]
    fn damaged_packing_is_an_error_not_a_bomb() {
        let large = vec![b'x'; 200_000];
        let mut packed = pack(large);
        // A length over the limit, a length that lies, a cut stream, a missing length.
        let mut claims = packed.clone();
        claims[1..9].copy_from_slice(&(MAX_RECORD + 1).to_be_bytes());
        assert!(unpack(&claims).is_err());
        let mut lies = packed.clone();
        lies[1..9].copy_from_slice(&10u64.to_be_bytes());
        assert!(unpack(&lies).is_err());
        packed.truncate(packed.len() / 2);
        assert!(unpack(&packed).is_err());
        assert!(unpack(&[DEFLATED, 1, 2]).is_err());
    }
}
