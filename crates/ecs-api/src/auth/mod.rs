//! Request authentication. `verify` is the only way to obtain a [`Verified`] request, so no
//! handler can see an unauthenticated one. Two schemes: HMAC-SHA1 over the parameters
//! (SignatureVersion 1.0, which Alibaba's newer docs call "V2") and ACS3-HMAC-SHA256 over a
//! canonical request (headers `x-acs-*`, `Authorization`).

mod nonce;
pub mod v1;
pub mod v3;

pub use nonce::{
    DEFAULT_CAPACITY as DEFAULT_NONCE_CAPACITY, NonceCache, NonceJournal, RECORD as NONCE_RECORD, Refused,
};
pub(crate) use v1::PROTOCOL_PARAMS;

use crate::error::{ApiError, Code};
use crate::params::Params;
use chrono::{DateTime, NaiveDateTime, Utc};

/// The nonce check both schemes end with: `SignatureNonceUsed` for a replay, and
/// `ServiceUnavailable` (which the SDKs retry) when the nonce could not be recorded durably.
/// `action` decides whether the nonce must be durable: only a Describe* may go unrecorded.
fn admit_nonce(
    nonces: &NonceCache,
    access_key_id: &str,
    nonce: &str,
    action: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let durable = !action.is_some_and(|a| a.starts_with("Describe"));
    match nonces.admit(access_key_id, nonce, now.timestamp(), durable) {
        Ok(()) => Ok(()),
        Err(Refused::Used) => Err(Code::SignatureNonceUsed.into()),
        Err(Refused::Unrecorded) => Err(Code::ServiceUnavailable.into()),
        Err(Refused::Full { retry_after_secs }) => {
            Err(ApiError::throttled(Code::Throttling, u64::try_from(retry_after_secs).unwrap_or(1) * 1000))
        }
    }
}

/// The longest SignatureNonce accepted, in bytes (SDKs send 32–36: a UUID or 32 hex digits).
pub const MAX_NONCE_BYTES: usize = 256;

/// How far a request's timestamp may be from the server clock.
pub const MAX_SKEW_SECS: i64 = 15 * 60;

/// The transport's view of one HTTP request, before anything is trusted.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: String,
    /// The raw query string, without `?`.
    pub query: String,
    /// Header names lower-cased; repeated headers appear repeatedly.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn is_form(&self) -> bool {
        self.header("content-type")
            .is_some_and(|c| c.to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"))
    }

    /// Query and form body merged; other bodies carry no parameters.
    pub fn params(&self) -> Result<Params, ApiError> {
        let form = self.is_form().then_some(self.body.as_slice());
        Params::from_query_and_form(&self.query, form)
    }
}

/// What the server knows of an AccessKey.
#[derive(Debug, Clone)]
pub struct KeyInfo {
    pub account_id: String,
    pub secret: String,
    pub enabled: bool,
}

/// Looks up AccessKeys; implemented by the control plane.
pub trait KeyStore {
    fn lookup(&self, access_key_id: &str) -> Option<KeyInfo>;

    /// Whether the account may make one more request now (its request rate): called once
    /// the signature is verified and before the nonce is recorded, so a refused request
    /// takes no room in the nonce cache. Errors with a Throttling code.
    fn admit(&self, _account_id: &str) -> Result<(), ApiError> {
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    HmacSha1,
    Acs3HmacSha256,
}

/// Response format the caller asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Xml,
}

/// An authenticated request: who is calling and what they asked for.
#[derive(Debug, Clone)]
pub struct Verified {
    pub account_id: String,
    pub access_key_id: String,
    pub scheme: Scheme,
    pub action: String,
    pub version: String,
    pub format: Format,
    /// Business parameters, with the signature's own parameters removed.
    pub params: Params,
}

/// Best effort, for rendering an error before authentication succeeded.
pub fn requested_format(req: &HttpRequest) -> Format {
    if req.header("authorization").is_some_and(|a| a.starts_with("ACS3-")) {
        return Format::Json;
    }
    match req.params().ok().and_then(|p| p.opt_str("Format")) {
        Some(f) if f.eq_ignore_ascii_case("json") => Format::Json,
        _ => Format::Xml,
    }
}

/// Authenticate one request. Checks run in the gateway's order: shape of the signature,
/// timestamp window, key, signature, and last the nonce (so a forged request cannot burn one).
pub fn verify(
    req: &HttpRequest,
    keys: &dyn KeyStore,
    nonces: &NonceCache,
    now: DateTime<Utc>,
) -> Result<Verified, ApiError> {
    if req.method != "GET" && req.method != "POST" {
        return Err(Code::UnsupportedHttpMethod.into());
    }
    let params = req.params()?;
    match req.header("authorization") {
        Some(auth) if auth.starts_with("ACS3-") => v3::verify(req, auth, params, keys, nonces, now),
        _ => v1::verify(req, params, keys, nonces, now),
    }
}

fn check_time(raw: &str, now: DateTime<Utc>) -> Result<(), ApiError> {
    let t = parse_time(raw).ok_or(ApiError::new(Code::InvalidTimeStampFormat))?;
    if (now - t).num_seconds().abs() > MAX_SKEW_SECS {
        return Err(Code::InvalidTimeStampExpired.into());
    }
    Ok(())
}

fn parse_time(raw: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M:%SZ")
        .map(|n| n.and_utc())
        .ok()
        .or_else(|| DateTime::parse_from_rfc3339(raw).ok().map(|d| d.with_timezone(&Utc)))
}

fn lookup_key(keys: &dyn KeyStore, id: &str) -> Result<KeyInfo, ApiError> {
    let key = keys.lookup(id).ok_or(ApiError::new(Code::InvalidAccessKeyIdNotFound))?;
    if !key.enabled {
        return Err(Code::InvalidAccessKeyIdInactive.into());
    }
    Ok(key)
}

/// Constant-time equality for signatures.
fn same(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
pub(crate) mod testkeys {
    use super::*;

    pub struct OneKey(pub &'static str, pub &'static str);

    impl KeyStore for OneKey {
        fn lookup(&self, id: &str) -> Option<KeyInfo> {
            (id == self.0).then(|| KeyInfo { account_id: "acct".into(), secret: self.1.into(), enabled: true })
        }
    }
}
