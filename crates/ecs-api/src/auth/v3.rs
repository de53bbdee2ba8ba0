//! ACS3-HMAC-SHA256: a canonical request over the query, exactly the headers the client listed
//! in `SignedHeaders`, and the SHA-256 of the body.

use super::{HttpRequest, KeyStore, NonceCache, Scheme, Verified, check_time, lookup_key, same};
use crate::error::{ApiError, Code};
use crate::params::{Params, percent_encode};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

pub const ALGORITHM: &str = "ACS3-HMAC-SHA256";

/// Headers the signature must cover for the request to mean what it says.
const MUST_SIGN: &[&str] =
    &["host", "x-acs-action", "x-acs-version", "x-acs-date", "x-acs-signature-nonce", "x-acs-content-sha256"];

/// The parsed `Authorization` header.
#[derive(Debug, PartialEq, Eq)]
pub struct Authorization {
    pub access_key_id: String,
    pub signed_headers: Vec<String>,
    pub signature: String,
}

pub fn parse_authorization(value: &str) -> Result<Authorization, ApiError> {
    let rest = value.strip_prefix(ALGORITHM).ok_or(ApiError::new(Code::InvalidSignatureMethod))?;
    let (mut cred, mut signed, mut sig) = (None, None, None);
    for part in rest.trim().split(',') {
        match part.trim().split_once('=') {
            Some(("Credential", v)) => cred = Some(v.trim().to_string()),
            Some(("SignedHeaders", v)) => signed = Some(v.trim().to_string()),
            Some(("Signature", v)) => sig = Some(v.trim().to_string()),
            _ => {}
        }
    }
    match (cred, signed, sig) {
        (Some(c), Some(h), Some(s)) if !c.is_empty() && !h.is_empty() && !s.is_empty() => Ok(Authorization {
            access_key_id: c,
            signed_headers: h.split(';').map(|x| x.trim().to_ascii_lowercase()).collect(),
            signature: s,
        }),
        _ => Err(Code::IncompleteSignature.into()),
    }
}

/// The canonical query string: form-decoded pairs, re-encoded, sorted, `k=v` joined by `&`.
pub fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> =
        form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (percent_encode(&k), percent_encode(&v))).collect();
    pairs.sort();
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
}

/// Lines `name:value` for each signed header, sorted; repeated headers joined by `,`.
pub fn canonical_headers(headers: &[(String, String)], signed: &[String]) -> String {
    let mut names: Vec<&String> = signed.iter().collect();
    names.sort();
    names.dedup();
    let mut out = String::new();
    for name in names {
        let mut values: Vec<&str> =
            headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim()).collect();
        values.sort_unstable();
        out.push_str(name);
        out.push(':');
        out.push_str(&values.join(","));
        out.push('\n');
    }
    out
}

pub fn canonical_request(
    method: &str,
    query: &str,
    headers: &[(String, String)],
    signed: &[String],
    payload_hash: &str,
) -> String {
    let mut sorted: Vec<&str> = signed.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    sorted.dedup();
    format!(
        "{method}\n/\n{}\n{}\n{}\n{payload_hash}",
        canonical_query(query),
        canonical_headers(headers, signed),
        sorted.join(";")
    )
}

pub fn string_to_sign(canonical_request: &str) -> String {
    format!("{ALGORITHM}\n{}", hex::encode(Sha256::digest(canonical_request.as_bytes())))
}

pub fn sign(secret: &str, string_to_sign: &str) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    mac.update(string_to_sign.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

pub(super) fn verify(
    req: &HttpRequest,
    auth_header: &str,
    params: Params,
    keys: &dyn KeyStore,
    nonces: &NonceCache,
    now: DateTime<Utc>,
) -> Result<Verified, ApiError> {
    let auth = parse_authorization(auth_header)?;
    if MUST_SIGN.iter().any(|h| !auth.signed_headers.iter().any(|s| s == h)) {
        return Err(Code::IncompleteSignature.into());
    }
    // Content-Type decides how a body is read, so a body's type must be signed; and an
    // `x-acs-*` header sent twice would let the order of the copies choose what is meant.
    let signed = |h: &str| auth.signed_headers.iter().any(|s| s == h);
    if !req.body.is_empty() && req.header("content-type").is_some() && !signed("content-type") {
        return Err(Code::IncompleteSignature.into());
    }
    let mut acs: Vec<&str> = req.headers.iter().map(|(k, _)| k.as_str()).filter(|k| k.starts_with("x-acs-")).collect();
    acs.sort_unstable();
    if acs.windows(2).any(|w| w[0] == w[1]) {
        return Err(Code::IncompleteSignature.into());
    }
    let header = |name: &str| req.header(name).map(str::trim).filter(|v| !v.is_empty());
    let date = header("x-acs-date").ok_or(ApiError::new(Code::IllegalTimestamp))?;
    check_time(date, now)?;
    let key = lookup_key(keys, &auth.access_key_id)?;
    let body_hash = hex::encode(Sha256::digest(&req.body));
    let claimed = header("x-acs-content-sha256").unwrap_or_default();
    let cr = canonical_request(&req.method, &req.query, &req.headers, &auth.signed_headers, claimed);
    let sts = string_to_sign(&cr);
    let expected = sign(&key.secret, &sts);
    if !same(expected.as_bytes(), auth.signature.to_ascii_lowercase().as_bytes()) || claimed != body_hash {
        return Err(ApiError::with(Code::SignatureDoesNotMatch, &sts));
    }
    let nonce = header("x-acs-signature-nonce").ok_or(ApiError::missing("x-acs-signature-nonce"))?;
    if nonce.len() > super::MAX_NONCE_BYTES {
        return Err(ApiError::invalid("x-acs-signature-nonce"));
    }
    keys.admit(&key.account_id)?;
    super::admit_nonce(nonces, &auth.access_key_id, nonce, header("x-acs-action"), now)?;
    let action = header("x-acs-action").ok_or(ApiError::missing("Action"))?.to_string();
    let version = header("x-acs-version").ok_or(ApiError::missing("Version"))?.to_string();
    Ok(Verified {
        account_id: key.account_id,
        access_key_id: auth.access_key_id,
        scheme: Scheme::Acs3HmacSha256,
        action,
        version,
        format: super::Format::Json,
        params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{testkeys::OneKey, verify as verify_any};
    use chrono::TimeZone;

    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn vector_d_headers() -> Vec<(String, String)> {
        [
            ("host", "ecs.cn-hangzhou.aliyuncs.com"),
            ("x-acs-action", "ResetDisk"),
            ("x-acs-version", "2014-05-26"),
            ("x-acs-date", "2024-01-01T00:00:00Z"),
            ("x-acs-signature-nonce", "0123456789abcdef0123456789abcdef"),
            ("x-acs-content-sha256", EMPTY),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    const SIGNED_D: &str = "host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version";

    #[test]
    fn vector_d() {
        let signed: Vec<String> = SIGNED_D.split(';').map(String::from).collect();
        let cr = canonical_request(
            "POST",
            "DiskId=d-bp199lyny9b3xxxx&SnapshotId=s-bp199lyny9b3xxxx",
            &vector_d_headers(),
            &signed,
            EMPTY,
        );
        assert_eq!(
            hex::encode(Sha256::digest(cr.as_bytes())),
            "535fb1728168d4f62b61a79e464b0bf571ec1b5b48d29e8150e1edda60645dd8"
        );
        assert_eq!(
            sign("testsecret", &string_to_sign(&cr)),
            "c0bb1fc3c1ae38d652aff5f83085504af11aa4a738efa1987a4274be3661adc5"
        );
    }

    #[test]
    fn vector_e_duplicate_headers_and_empty_values() {
        let headers =
            vec![("x-acs-test".to_string(), "http".to_string()), ("x-acs-TEST".to_string(), "https".to_string())];
        assert_eq!(canonical_query("test=ok&empty="), "empty=&test=ok");
        assert_eq!(canonical_headers(&headers, &["x-acs-test".to_string()]), "x-acs-test:http,https\n");
        let cr = canonical_request(
            "GET",
            "test=ok&empty=",
            &headers,
            &["x-acs-test".to_string()],
            "55e12e91650d2fec56ec74e1d3e4ddbfce2ef3a65890c2a19ecf88a307e76a23",
        );
        assert_eq!(
            sign("secret", &string_to_sign(&cr)),
            "d16b30a7699ae9e43875b13195b2f81bcc3ed10c14a9b5eb780e51619aa50be1"
        );
    }

    fn vector_d_request(sig: &str) -> HttpRequest {
        let mut headers = vector_d_headers();
        headers.push((
            "authorization".into(),
            format!("ACS3-HMAC-SHA256 Credential=testid,SignedHeaders={SIGNED_D},Signature={sig}"),
        ));
        HttpRequest {
            method: "POST".into(),
            query: "DiskId=d-bp199lyny9b3xxxx&SnapshotId=s-bp199lyny9b3xxxx".into(),
            headers,
            body: vec![],
        }
    }

    #[test]
    fn verifies_vector_d_end_to_end() {
        let now = Utc.with_ymd_and_hms(2024, 1, 1, 0, 1, 0).unwrap();
        let keys = OneKey("testid", "testsecret");
        let nonces = NonceCache::new();
        let good = "c0bb1fc3c1ae38d652aff5f83085504af11aa4a738efa1987a4274be3661adc5";
        let v = verify_any(&vector_d_request(good), &keys, &nonces, now).unwrap();
        assert_eq!((v.action.as_str(), v.scheme), ("ResetDisk", Scheme::Acs3HmacSha256));
        assert_eq!(v.params.get("DiskId"), Some("d-bp199lyny9b3xxxx"));
        let e = verify_any(&vector_d_request(good), &keys, &nonces, now).unwrap_err();
        assert_eq!(e.code, Code::SignatureNonceUsed);
        let bad = good.replace('c', "d");
        let e = verify_any(&vector_d_request(&bad), &keys, &NonceCache::new(), now).unwrap_err();
        assert_eq!(e.code, Code::SignatureDoesNotMatch);
    }

    #[test]
    fn duplicate_acs_headers_and_an_unsigned_content_type_are_refused() {
        let now = Utc.with_ymd_and_hms(2024, 1, 1, 0, 1, 0).unwrap();
        let good = "c0bb1fc3c1ae38d652aff5f83085504af11aa4a738efa1987a4274be3661adc5";
        let keys = OneKey("testid", "testsecret");
        let mut req = vector_d_request(good);
        req.headers.push(("x-acs-action".into(), "DeleteDisk".into()));
        assert_eq!(verify_any(&req, &keys, &NonceCache::new(), now).unwrap_err().code, Code::IncompleteSignature);
        let mut req = vector_d_request(good);
        req.headers.push(("content-type".into(), "application/x-www-form-urlencoded".into()));
        req.body = b"Force=true".to_vec();
        assert_eq!(verify_any(&req, &keys, &NonceCache::new(), now).unwrap_err().code, Code::IncompleteSignature);
        // A Content-Type with no body is harmless, and vector D still verifies.
        let mut req = vector_d_request(good);
        req.headers.push(("content-type".into(), "application/json".into()));
        assert!(verify_any(&req, &keys, &NonceCache::new(), now).is_ok());
    }

    #[test]
    fn body_must_match_its_hash() {
        let now = Utc.with_ymd_and_hms(2024, 1, 1, 0, 1, 0).unwrap();
        let mut req = vector_d_request("c0bb1fc3c1ae38d652aff5f83085504af11aa4a738efa1987a4274be3661adc5");
        req.body = b"tampered".to_vec();
        let e = verify_any(&req, &OneKey("testid", "testsecret"), &NonceCache::new(), now).unwrap_err();
        assert_eq!(e.code, Code::SignatureDoesNotMatch);
    }

    #[test]
    fn authorization_must_sign_the_essentials() {
        let e = parse_authorization("ACS3-HMAC-SHA256 Credential=a,Signature=b").unwrap_err();
        assert_eq!(e.code, Code::IncompleteSignature);
        let a = parse_authorization("ACS3-HMAC-SHA256 Credential=a,SignedHeaders=host;X-Acs-Date,Signature=b").unwrap();
        assert_eq!(a.signed_headers, vec!["host", "x-acs-date"]);
        let e = parse_authorization("ACS3-HMAC-SM3 Credential=a,SignedHeaders=host,Signature=b").unwrap_err();
        assert_eq!(e.code, Code::InvalidSignatureMethod);
    }
}
