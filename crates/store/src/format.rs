//! The metadata log's records, sans-IO. A record on disk is
//! `len: u32 | crc32c(len): u32 | crc32c(body): u32 | body = kind: u8, payload`, little endian.
//! The length has its own checksum so that a damaged length in the middle of the log is told
//! apart from a record torn by a crash at its end. The file starts
//! with a header record carrying the magic and the format version.

use crate::error::{Result, StoreError};

pub const MAGIC: &[u8; 8] = b"SNAPDISK";
pub const FORMAT_VERSION: u32 = 1;
/// Records larger than this are corrupt by definition (names are short, extents small).
pub const MAX_RECORD: usize = 1 << 20;
const FRAME: usize = 12;

pub type LayerId = u64;
pub type Phys = u64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// First record of every file; `generation` ties a log to the checkpoint it follows.
    Header {
        version: u32,
        generation: u64,
    },
    /// Blocks `block..block+count` of `layer` now live at `phys..phys+count`.
    Write {
        layer: LayerId,
        block: u64,
        count: u32,
        phys: Phys,
    },
    /// Blocks `block..block+count` of `layer` read as zeros.
    Trim {
        layer: LayerId,
        block: u64,
        count: u32,
    },
    CreateVolume {
        volume: String,
        size: u64,
        layer: LayerId,
        from: Option<String>,
    },
    Snapshot {
        volume: String,
        snapshot: String,
        new_layer: LayerId,
    },
    Reset {
        volume: String,
        snapshot: String,
        new_layer: LayerId,
    },
    DeleteVolume {
        volume: String,
    },
    DeleteSnapshot {
        snapshot: String,
    },
    /// `to` is a copy of snapshot `from`: the same layer and block map, bound to the same
    /// volume (CopySnapshot; O(1), no block is copied).
    CopySnapshot {
        from: String,
        to: String,
    },
    /// Several volumes frozen at one point (a snapshot group): one record, so a crash keeps
    /// all of the members or none. Each member is (volume, snapshot, new head layer).
    SnapshotGroup {
        members: Vec<(String, String, LayerId)>,
    },
    /// The volume's size is now `size` bytes (grow only; blocks past the old end read as
    /// zeros because no layer maps them).
    Resize {
        volume: String,
        size: u64,
    },
    /// The volume gets a fresh empty head `new_layer` on snapshot `from` (any volume's), or on
    /// nothing (all zeros) when `from` is `None`; its size is unchanged.
    Rebase {
        volume: String,
        from: Option<String>,
        new_layer: LayerId,
    },
    /// GC folded `parent` into its only child `child`.
    Merge {
        parent: LayerId,
        child: LayerId,
    },
    /// GC dropped an unreferenced layer.
    Drop {
        layer: LayerId,
    },
    // Checkpoint records: the state of a frozen layer, a snapshot and a volume, restated.
    Layer {
        layer: LayerId,
        parent: Option<LayerId>,
    },
    BindSnapshot {
        snapshot: String,
        volume: String,
        layer: LayerId,
        size: u64,
    },
    Volume {
        volume: String,
        size: u64,
        layer: LayerId,
        parent: Option<LayerId>,
    },
    NextIds {
        layer: LayerId,
        phys: Phys,
    },
}

struct W(Vec<u8>);

impl W {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn opt(&mut self, v: Option<u64>) {
        self.u64(v.map_or(0, |x| x + 1));
    }
    fn str(&mut self, s: &str) {
        self.u32(s.len() as u32);
        self.0.extend_from_slice(s.as_bytes());
    }
    fn ostr(&mut self, s: &Option<String>) {
        match s {
            Some(s) => {
                self.u8(1);
                self.str(s);
            }
            None => self.u8(0),
        }
    }
}

struct Rd<'a>(&'a [u8]);

impl Rd<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        if self.0.len() < n {
            return Err(StoreError::corrupt("metadata record ends early"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn opt(&mut self) -> Result<Option<u64>> {
        Ok(self.u64()?.checked_sub(1))
    }
    fn str(&mut self) -> Result<String> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| StoreError::corrupt("metadata name is not UTF-8"))
    }
    fn ostr(&mut self) -> Result<Option<String>> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.str()?)),
            _ => Err(StoreError::corrupt("bad option tag in metadata")),
        }
    }
}

impl Record {
    /// Append the framed record to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut w = W(Vec::with_capacity(40));
        match self {
            Record::Header { version, generation } => {
                w.u8(0);
                w.0.extend_from_slice(MAGIC);
                w.u32(*version);
                w.u64(*generation);
            }
            Record::Write { layer, block, count, phys } => {
                w.u8(1);
                w.u64(*layer);
                w.u64(*block);
                w.u32(*count);
                w.u64(*phys);
            }
            Record::Trim { layer, block, count } => {
                w.u8(2);
                w.u64(*layer);
                w.u64(*block);
                w.u32(*count);
            }
            Record::CreateVolume { volume, size, layer, from } => {
                w.u8(3);
                w.str(volume);
                w.u64(*size);
                w.u64(*layer);
                w.ostr(from);
            }
            Record::Snapshot { volume, snapshot, new_layer } => {
                w.u8(4);
                w.str(volume);
                w.str(snapshot);
                w.u64(*new_layer);
            }
            Record::CopySnapshot { from, to } => {
                w.u8(17);
                w.str(from);
                w.str(to);
            }
            Record::SnapshotGroup { members } => {
                w.u8(16);
                w.u32(members.len() as u32);
                for (volume, snapshot, new_layer) in members {
                    w.str(volume);
                    w.str(snapshot);
                    w.u64(*new_layer);
                }
            }
            Record::Reset { volume, snapshot, new_layer } => {
                w.u8(5);
                w.str(volume);
                w.str(snapshot);
                w.u64(*new_layer);
            }
            Record::DeleteVolume { volume } => {
                w.u8(6);
                w.str(volume);
            }
            Record::DeleteSnapshot { snapshot } => {
                w.u8(7);
                w.str(snapshot);
            }
            Record::Merge { parent, child } => {
                w.u8(8);
                w.u64(*parent);
                w.u64(*child);
            }
            Record::Drop { layer } => {
                w.u8(9);
                w.u64(*layer);
            }
            Record::Layer { layer, parent } => {
                w.u8(10);
                w.u64(*layer);
                w.opt(*parent);
            }
            Record::BindSnapshot { snapshot, volume, layer, size } => {
                w.u8(11);
                w.str(snapshot);
                w.str(volume);
                w.u64(*layer);
                w.u64(*size);
            }
            Record::Volume { volume, size, layer, parent } => {
                w.u8(12);
                w.str(volume);
                w.u64(*size);
                w.u64(*layer);
                w.opt(*parent);
            }
            Record::NextIds { layer, phys } => {
                w.u8(13);
                w.u64(*layer);
                w.u64(*phys);
            }
            Record::Resize { volume, size } => {
                w.u8(14);
                w.str(volume);
                w.u64(*size);
            }
            Record::Rebase { volume, from, new_layer } => {
                w.u8(15);
                w.str(volume);
                w.ostr(from);
                w.u64(*new_layer);
            }
        }
        let len = (w.0.len() as u32).to_le_bytes();
        out.extend_from_slice(&len);
        out.extend_from_slice(&crc32c::crc32c(&len).to_le_bytes());
        out.extend_from_slice(&crc32c::crc32c(&w.0).to_le_bytes());
        out.extend_from_slice(&w.0);
    }

    fn decode_body(body: &[u8]) -> Result<Record> {
        let mut r = Rd(body);
        let rec = match r.u8()? {
            0 => {
                if r.take(8)? != MAGIC {
                    return Err(StoreError::corrupt("metadata log has a bad magic"));
                }
                Record::Header { version: r.u32()?, generation: r.u64()? }
            }
            1 => Record::Write { layer: r.u64()?, block: r.u64()?, count: r.u32()?, phys: r.u64()? },
            2 => Record::Trim { layer: r.u64()?, block: r.u64()?, count: r.u32()? },
            3 => Record::CreateVolume { volume: r.str()?, size: r.u64()?, layer: r.u64()?, from: r.ostr()? },
            4 => Record::Snapshot { volume: r.str()?, snapshot: r.str()?, new_layer: r.u64()? },
            5 => Record::Reset { volume: r.str()?, snapshot: r.str()?, new_layer: r.u64()? },
            6 => Record::DeleteVolume { volume: r.str()? },
            7 => Record::DeleteSnapshot { snapshot: r.str()? },
            8 => Record::Merge { parent: r.u64()?, child: r.u64()? },
            9 => Record::Drop { layer: r.u64()? },
            10 => Record::Layer { layer: r.u64()?, parent: r.opt()? },
            11 => Record::BindSnapshot { snapshot: r.str()?, volume: r.str()?, layer: r.u64()?, size: r.u64()? },
            12 => Record::Volume { volume: r.str()?, size: r.u64()?, layer: r.u64()?, parent: r.opt()? },
            13 => Record::NextIds { layer: r.u64()?, phys: r.u64()? },
            14 => Record::Resize { volume: r.str()?, size: r.u64()? },
            15 => Record::Rebase { volume: r.str()?, from: r.ostr()?, new_layer: r.u64()? },
            17 => Record::CopySnapshot { from: r.str()?, to: r.str()? },
            16 => {
                let n = r.u32()? as usize;
                // Each member takes at least 16 bytes: a count past what is left is corrupt.
                if n > r.0.len() / 16 {
                    return Err(StoreError::corrupt("snapshot group record has a bad member count"));
                }
                let mut members = Vec::with_capacity(n);
                for _ in 0..n {
                    members.push((r.str()?, r.str()?, r.u64()?));
                }
                Record::SnapshotGroup { members }
            }
            k => {
                return Err(StoreError::corrupt(format!("unknown metadata record kind {k}")));
            }
        };
        if !r.0.is_empty() {
            return Err(StoreError::corrupt("metadata record has trailing bytes"));
        }
        Ok(rec)
    }
}

/// The result of scanning a log: the records that verified, where they end, and whether what
/// follows is a torn tail (a crash mid-append: safe to cut) rather than corruption.
#[derive(Debug)]
pub struct Scan {
    pub records: Vec<Record>,
    pub valid_len: usize,
}

/// Decode a whole log. A bad record followed by nothing but its own torn bytes is a crash's
/// tail; a bad record with anything after it is corruption and refuses the whole log.
pub fn scan(buf: &[u8]) -> Result<Scan> {
    let mut records = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let rest = &buf[pos..];
        if rest.len() < FRAME {
            break; // torn frame header
        }
        let word = |i: usize| u32::from_le_bytes([rest[i], rest[i + 1], rest[i + 2], rest[i + 3]]);
        let (len, len_crc, crc) = (word(0) as usize, word(4), word(8));
        if crc32c::crc32c(&rest[0..4]) != len_crc || len == 0 || len > MAX_RECORD {
            return Err(StoreError::corrupt(format!("metadata record at byte {pos} has a damaged length")));
        }
        if rest.len() < FRAME + len {
            break; // torn body
        }
        let body = &rest[FRAME..FRAME + len];
        if crc32c::crc32c(body) != crc {
            if rest.len() == FRAME + len {
                break; // the last record, torn in place
            }
            return Err(StoreError::corrupt(format!("metadata record at byte {pos} fails its checksum")));
        }
        records.push(Record::decode_body(body)?);
        pos += FRAME + len;
    }
    match records.first() {
        Some(Record::Header { version, .. }) if *version == FORMAT_VERSION => {}
        Some(Record::Header { version, .. }) => {
            return Err(StoreError::corrupt(format!(
                "metadata format version {version}, this build reads {FORMAT_VERSION}"
            )));
        }
        Some(_) => {
            return Err(StoreError::corrupt("metadata log does not start with a header"));
        }
        None if buf.len() >= FRAME => {
            return Err(StoreError::corrupt("metadata log header is damaged"));
        }
        None => {}
    }
    Ok(Scan { records, valid_len: pos })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Vec<Record> {
        vec![
            Record::Header { version: FORMAT_VERSION, generation: 3 },
            Record::CreateVolume { volume: "d-1".into(), size: 1 << 30, layer: 1, from: None },
            Record::Write { layer: 1, block: 7, count: 3, phys: 99 },
            Record::Trim { layer: 1, block: 8, count: 1 },
            Record::Snapshot { volume: "d-1".into(), snapshot: "s-1".into(), new_layer: 2 },
            Record::Reset { volume: "d-1".into(), snapshot: "s-1".into(), new_layer: 3 },
            Record::CreateVolume { volume: "d-2".into(), size: 1 << 30, layer: 4, from: Some("s-1".into()) },
            Record::Merge { parent: 1, child: 3 },
            Record::Drop { layer: 2 },
            Record::Layer { layer: 5, parent: None },
            Record::Layer { layer: 6, parent: Some(0) },
            Record::BindSnapshot { snapshot: "s".into(), volume: "d".into(), layer: 6, size: 1 << 20 },
            Record::Volume { volume: "d".into(), size: 4096, layer: 7, parent: Some(6) },
            Record::NextIds { layer: 8, phys: 100 },
            Record::DeleteSnapshot { snapshot: "s-1".into() },
            Record::DeleteVolume { volume: "d-2".into() },
            Record::Resize { volume: "d-1".into(), size: 2 << 30 },
            Record::Rebase { volume: "d-1".into(), from: Some("s-1".into()), new_layer: 9 },
            Record::Rebase { volume: "d-1".into(), from: None, new_layer: 10 },
            Record::SnapshotGroup { members: vec![("d-1".into(), "s-7".into(), 11), ("d-3".into(), "s-8".into(), 12)] },
            Record::SnapshotGroup { members: vec![] },
            Record::CopySnapshot { from: "s-7".into(), to: "s-9".into() },
        ]
    }

    #[test]
    fn round_trip() {
        let mut buf = Vec::new();
        for r in sample() {
            r.encode(&mut buf);
        }
        let s = scan(&buf).unwrap();
        assert_eq!(s.records, sample());
        assert_eq!(s.valid_len, buf.len());
    }

    #[test]
    fn torn_tail_is_cut_but_middle_damage_is_corruption() {
        let mut buf = Vec::new();
        for r in sample() {
            r.encode(&mut buf);
        }
        let full = buf.len();
        for cut in [full - 1, full - 5, full - 16] {
            let s = scan(&buf[..cut]).unwrap();
            assert_eq!(s.records.len(), sample().len() - 1);
        }
        let mut bad = buf.clone();
        bad[40] ^= 0xff;
        assert_eq!(scan(&bad).unwrap_err().kind, crate::ErrorKind::Corrupt);
        let mut last = buf.clone();
        let n = last.len();
        last[n - 1] ^= 0xff;
        assert_eq!(scan(&last).unwrap().records.len(), sample().len() - 1);
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = scan(&bytes);
        }

        #[test]
        fn flipped_bits_are_detected(pos in 0usize..200, bit in 0u8..8) {
            let mut buf = Vec::new();
            for r in sample() { r.encode(&mut buf); }
            let pos = pos % buf.len();
            buf[pos] ^= 1 << bit;
            match scan(&buf) {
                Err(e) => prop_assert_eq!(e.kind, crate::ErrorKind::Corrupt),
                // Damage to the final record reads as a torn tail: everything before survives.
                Ok(s) => prop_assert!(s.records.len() >= sample().len() - 1 && s.records[..] == sample()[..s.records.len()]),
            }
        }
    }
}
