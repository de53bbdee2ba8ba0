//! NBD wire format, sans-IO (from the protocol specification, doc/proto.md of
//! NetworkBlockDevice/nbd): handshake, option haggling, requests and replies as byte layouts.

pub const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
pub const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
pub const OPT_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
pub const REQUEST_MAGIC: u32 = 0x2560_9513;
pub const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
pub const STRUCTURED_REPLY_MAGIC: u32 = 0x668e_33ef;

// Handshake flags (server) and client flags.
pub const FLAG_FIXED_NEWSTYLE: u16 = 1;
pub const FLAG_NO_ZEROES: u16 = 2;
pub const FLAG_C_FIXED_NEWSTYLE: u32 = 1;
pub const FLAG_C_NO_ZEROES: u32 = 2;

// Options.
pub const OPT_EXPORT_NAME: u32 = 1;
pub const OPT_ABORT: u32 = 2;
pub const OPT_LIST: u32 = 3;
/// NBD_OPT_STARTTLS: the TLS handshake starts right after the server's ACK (proto.md, "TLS support").
pub const OPT_STARTTLS: u32 = 5;
pub const OPT_INFO: u32 = 6;
pub const OPT_GO: u32 = 7;
pub const OPT_STRUCTURED_REPLY: u32 = 8;
pub const OPT_LIST_META_CONTEXT: u32 = 9;
pub const OPT_SET_META_CONTEXT: u32 = 10;

// Option replies.
pub const REP_ACK: u32 = 1;
pub const REP_SERVER: u32 = 2;
pub const REP_INFO: u32 = 3;
pub const REP_META_CONTEXT: u32 = 4;
pub const REP_ERR_UNSUP: u32 = 0x8000_0001;
pub const REP_ERR_POLICY: u32 = 0x8000_0002;
pub const REP_ERR_INVALID: u32 = 0x8000_0003;
/// The server is in TLS-only mode and the option came before NBD_OPT_STARTTLS.
pub const REP_ERR_TLS_REQD: u32 = 0x8000_0005;
pub const REP_ERR_UNKNOWN: u32 = 0x8000_0006;
pub const REP_ERR_TOO_BIG: u32 = 0x8000_0009;

// Info types.
pub const INFO_EXPORT: u16 = 0;
pub const INFO_NAME: u16 = 1;
pub const INFO_DESCRIPTION: u16 = 2;
pub const INFO_BLOCK_SIZE: u16 = 3;

// Transmission flags.
pub const TF_HAS_FLAGS: u16 = 1;
pub const TF_READ_ONLY: u16 = 1 << 1;
pub const TF_SEND_FLUSH: u16 = 1 << 2;
pub const TF_SEND_FUA: u16 = 1 << 3;
pub const TF_SEND_TRIM: u16 = 1 << 5;
pub const TF_SEND_WRITE_ZEROES: u16 = 1 << 6;
pub const TF_SEND_DF: u16 = 1 << 7;
pub const TF_CAN_MULTI_CONN: u16 = 1 << 8;

// Commands and their flags.
pub const CMD_READ: u16 = 0;
pub const CMD_WRITE: u16 = 1;
pub const CMD_DISC: u16 = 2;
pub const CMD_FLUSH: u16 = 3;
pub const CMD_TRIM: u16 = 4;
pub const CMD_WRITE_ZEROES: u16 = 6;
pub const CMD_BLOCK_STATUS: u16 = 7;
pub const CMD_FLAG_FUA: u16 = 1;
pub const CMD_FLAG_NO_HOLE: u16 = 1 << 1;
pub const CMD_FLAG_DF: u16 = 1 << 2;
pub const CMD_FLAG_REQ_ONE: u16 = 1 << 3;

// Structured reply chunks.
pub const REPLY_FLAG_DONE: u16 = 1;
pub const REPLY_TYPE_NONE: u16 = 0;
pub const REPLY_TYPE_OFFSET_DATA: u16 = 1;
pub const REPLY_TYPE_BLOCK_STATUS: u16 = 5;
pub const REPLY_TYPE_ERROR: u16 = 0x8001;

// base:allocation status bits.
pub const STATE_HOLE: u32 = 1;
pub const STATE_ZERO: u32 = 2;

/// The only metadata context offered, and its id.
pub const BASE_ALLOCATION: &str = "base:allocation";
pub const BASE_ALLOCATION_ID: u32 = 1;

// Errno values on the wire (Linux numbering, as the spec fixes them).
pub const EPERM: u32 = 1;
pub const EIO: u32 = 5;
pub const ENOMEM: u32 = 12;
pub const EINVAL: u32 = 22;
pub const ENOSPC: u32 = 28;
pub const EOVERFLOW: u32 = 75;
pub const ENOTSUP: u32 = 95;
pub const ESHUTDOWN: u32 = 108;

/// Largest option payload accepted; longer options are answered with an error, not read.
pub const MAX_OPTION_LEN: u32 = 4096;
/// Largest request payload advertised (and accepted).
pub const MAX_PAYLOAD: u32 = 32 << 20;

/// A transmission request header (28 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub flags: u16,
    pub kind: u16,
    pub cookie: u64,
    pub offset: u64,
    pub length: u32,
}

pub const REQUEST_LEN: usize = 28;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("bad magic {0:#x}")]
    BadMagic(u64),
    #[error("message too short")]
    Short,
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}
fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}
fn be64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

impl Request {
    pub fn decode(b: &[u8]) -> Result<Request, FrameError> {
        if b.len() < REQUEST_LEN {
            return Err(FrameError::Short);
        }
        let magic = be32(b);
        if magic != REQUEST_MAGIC {
            return Err(FrameError::BadMagic(magic.into()));
        }
        Ok(Request {
            flags: be16(&b[4..]),
            kind: be16(&b[6..]),
            cookie: be64(&b[8..]),
            offset: be64(&b[16..]),
            length: be32(&b[24..]),
        })
    }

    pub fn encode(&self) -> [u8; REQUEST_LEN] {
        let mut out = [0u8; REQUEST_LEN];
        out[0..4].copy_from_slice(&REQUEST_MAGIC.to_be_bytes());
        out[4..6].copy_from_slice(&self.flags.to_be_bytes());
        out[6..8].copy_from_slice(&self.kind.to_be_bytes());
        out[8..16].copy_from_slice(&self.cookie.to_be_bytes());
        out[16..24].copy_from_slice(&self.offset.to_be_bytes());
        out[24..28].copy_from_slice(&self.length.to_be_bytes());
        out
    }

    /// Bytes of payload that follow this header on the wire.
    pub fn payload_len(&self) -> u32 {
        if self.kind == CMD_WRITE { self.length } else { 0 }
    }
}

/// An option header from the client: (option, payload length).
pub fn decode_option_header(b: &[u8; 16]) -> Result<(u32, u32), FrameError> {
    let magic = be64(b);
    if magic != IHAVEOPT {
        return Err(FrameError::BadMagic(magic));
    }
    Ok((be32(&b[8..]), be32(&b[12..])))
}

pub fn option_reply(option: u32, kind: u32, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(20 + data.len());
    out.extend_from_slice(&OPT_REPLY_MAGIC.to_be_bytes());
    out.extend_from_slice(&option.to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
    out
}

pub fn info_export(size: u64, flags: u16) -> Vec<u8> {
    let mut d = INFO_EXPORT.to_be_bytes().to_vec();
    d.extend_from_slice(&size.to_be_bytes());
    d.extend_from_slice(&flags.to_be_bytes());
    d
}

pub fn info_block_size(min: u32, preferred: u32, max: u32) -> Vec<u8> {
    let mut d = INFO_BLOCK_SIZE.to_be_bytes().to_vec();
    for v in [min, preferred, max] {
        d.extend_from_slice(&v.to_be_bytes());
    }
    d
}

pub fn info_name(name: &str) -> Vec<u8> {
    let mut d = INFO_NAME.to_be_bytes().to_vec();
    d.extend_from_slice(name.as_bytes());
    d
}

/// The payload of NBD_OPT_INFO / NBD_OPT_GO: export name and the info types requested.
pub fn parse_info_request(d: &[u8]) -> Option<(String, Vec<u16>)> {
    let n = be32(d.get(0..4)?) as usize;
    let name = std::str::from_utf8(d.get(4..4 + n)?).ok()?.to_string();
    let rest = d.get(4 + n..)?;
    let count = be16(rest.get(0..2)?) as usize;
    let reqs = rest.get(2..2 + 2 * count)?;
    if rest.len() != 2 + 2 * count {
        return None;
    }
    Some((name, reqs.chunks(2).map(be16).collect()))
}

/// The payload of NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT.
pub fn parse_meta_request(d: &[u8]) -> Option<(String, Vec<String>)> {
    let n = be32(d.get(0..4)?) as usize;
    let name = std::str::from_utf8(d.get(4..4 + n)?).ok()?.to_string();
    let mut rest = d.get(4 + n..)?;
    let count = be32(rest.get(0..4)?) as usize;
    rest = &rest[4..];
    let mut queries = Vec::new();
    for _ in 0..count {
        let l = be32(rest.get(0..4)?) as usize;
        queries.push(std::str::from_utf8(rest.get(4..4 + l)?).ok()?.to_string());
        rest = &rest[4 + l..];
    }
    if !rest.is_empty() {
        return None;
    }
    Some((name, queries))
}

pub fn simple_reply(cookie: u64, error: u32, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + data.len());
    out.extend_from_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
    out.extend_from_slice(&error.to_be_bytes());
    out.extend_from_slice(&cookie.to_be_bytes());
    out.extend_from_slice(data);
    out
}

/// A structured reply chunk header; the payload (of `len` bytes) follows it.
pub fn chunk_header(cookie: u64, flags: u16, kind: u16, len: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(20);
    out.extend_from_slice(&STRUCTURED_REPLY_MAGIC.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&cookie.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out
}

pub fn error_chunk(cookie: u64, error: u32, message: &str) -> Vec<u8> {
    // At most 1 KiB of message, cut on a character boundary.
    let mut cut = message.len().min(1024);
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    let msg = &message.as_bytes()[..cut];
    let mut out = chunk_header(cookie, REPLY_FLAG_DONE, REPLY_TYPE_ERROR, 6 + msg.len() as u32);
    out.extend_from_slice(&error.to_be_bytes());
    out.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    out.extend_from_slice(msg);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn request_round_trip() {
        let r = Request { flags: CMD_FLAG_FUA, kind: CMD_WRITE, cookie: 42, offset: 4096, length: 512 };
        assert_eq!(Request::decode(&r.encode()), Ok(r));
        assert_eq!(r.payload_len(), 512);
        let mut bad = r.encode();
        bad[0] = 0;
        assert!(matches!(Request::decode(&bad), Err(FrameError::BadMagic(_))));
        assert_eq!(Request::decode(&bad[..10]), Err(FrameError::Short));
    }

    #[test]
    fn option_payloads() {
        let mut d = 3u32.to_be_bytes().to_vec();
        d.extend_from_slice(b"d-1");
        d.extend_from_slice(&2u16.to_be_bytes());
        d.extend_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
        d.extend_from_slice(&INFO_NAME.to_be_bytes());
        assert_eq!(parse_info_request(&d), Some(("d-1".into(), vec![INFO_BLOCK_SIZE, INFO_NAME])));
        assert_eq!(parse_info_request(&d[..d.len() - 1]), None);
        let mut m = 0u32.to_be_bytes().to_vec();
        m.extend_from_slice(&1u32.to_be_bytes());
        m.extend_from_slice(&15u32.to_be_bytes());
        m.extend_from_slice(BASE_ALLOCATION.as_bytes());
        assert_eq!(parse_meta_request(&m), Some((String::new(), vec![BASE_ALLOCATION.to_string()])));
        m.push(0);
        assert_eq!(parse_meta_request(&m), None);
    }

    proptest! {
        #[test]
        fn decoders_survive_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
            let _ = Request::decode(&bytes);
            let _ = parse_info_request(&bytes);
            let _ = parse_meta_request(&bytes);
            if bytes.len() >= 16 {
                let mut h = [0u8; 16];
                h.copy_from_slice(&bytes[..16]);
                let _ = decode_option_header(&h);
            }
        }

        #[test]
        fn requests_round_trip(flags: u16, kind: u16, cookie: u64, offset: u64, length: u32) {
            let r = Request { flags, kind, cookie, offset, length };
            prop_assert_eq!(Request::decode(&r.encode()), Ok(r));
        }
    }
}
