//! HMAC-SHA1 over the sorted, percent-encoded parameters (SignatureVersion 1.0).

use super::{Format, KeyStore, NonceCache, Scheme, Verified, check_time, lookup_key, same};
use crate::error::{ApiError, Code};
use crate::params::{Params, percent_encode, percent_encode_into};
use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};

/// The signature's own parameters, removed before the action sees the rest.
pub(crate) const PROTOCOL_PARAMS: &[&str] = &[
    "Action",
    "Version",
    "Format",
    "AccessKeyId",
    "Signature",
    "SignatureMethod",
    "SignatureVersion",
    "SignatureNonce",
    "SignatureType",
    "Timestamp",
    "SecurityToken",
];

/// `METHOD&%2F&percentEncode(sorted k=v joined by &)` over every parameter but `Signature`.
pub fn string_to_sign(method: &str, params: &Params) -> String {
    let mut pairs: Vec<(String, String)> =
        params.iter().filter(|(k, _)| *k != "Signature").map(|(k, v)| (percent_encode(k), percent_encode(v))).collect();
    pairs.sort_unstable();
    // The canonical query `k=v&k=v`, percent-encoded once more as it is written.
    let bytes: usize = pairs.iter().map(|(k, v)| k.len() + v.len() + 6).sum();
    let mut out = String::with_capacity(method.len() + 5 + bytes * 3 / 2);
    out.push_str(method);
    out.push_str("&%2F&");
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push_str("%26");
        }
        percent_encode_into(&mut out, k);
        out.push_str("%3D");
        percent_encode_into(&mut out, v);
    }
    out
}

pub fn sign(secret: &str, string_to_sign: &str) -> String {
    let mut mac = match Hmac::<sha1::Sha1>::new_from_slice(format!("{secret}&").as_bytes()) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    mac.update(string_to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

pub(super) fn verify(
    req: &super::HttpRequest,
    mut params: Params,
    keys: &dyn KeyStore,
    nonces: &NonceCache,
    now: DateTime<Utc>,
) -> Result<Verified, ApiError> {
    for name in ["AccessKeyId", "Signature", "SignatureMethod", "SignatureNonce"] {
        if params.opt_str(name).is_none() {
            return Err(if name == "Signature" || name == "SignatureMethod" {
                ApiError::new(Code::IncompleteSignature)
            } else {
                ApiError::missing(name)
            });
        }
    }
    if params.get("SignatureMethod") != Some("HMAC-SHA1") {
        return Err(Code::InvalidSignatureMethod.into());
    }
    if params.get("SignatureVersion").is_some_and(|v| v != "1.0") {
        return Err(ApiError::invalid("SignatureVersion"));
    }
    let ts = params.opt_str("Timestamp").ok_or(ApiError::new(Code::IllegalTimestamp))?;
    check_time(&ts, now)?;
    let ak = params.req_str("AccessKeyId")?;
    let key = lookup_key(keys, &ak)?;
    let sts = string_to_sign(&req.method, &params);
    let expected = sign(&key.secret, &sts);
    let given = params.req_str("Signature")?;
    if !same(expected.as_bytes(), given.as_bytes()) {
        return Err(ApiError::with(Code::SignatureDoesNotMatch, &sts));
    }
    let nonce = params.req_str("SignatureNonce")?;
    if nonce.len() > super::MAX_NONCE_BYTES {
        return Err(ApiError::invalid("SignatureNonce"));
    }
    keys.admit(&key.account_id)?;
    super::admit_nonce(nonces, &ak, &nonce, params.get("Action"), now)?;
    let format = match params.opt_str("Format") {
        Some(f) if f.eq_ignore_ascii_case("json") => Format::Json,
        Some(f) if f.eq_ignore_ascii_case("xml") => Format::Xml,
        Some(_) => return Err(ApiError::invalid("Format")),
        None => Format::Xml,
    };
    let action = params.req_str("Action")?;
    let version = params.req_str("Version")?;
    for p in PROTOCOL_PARAMS {
        params.remove(p);
    }
    Ok(Verified {
        account_id: key.account_id,
        access_key_id: ak,
        scheme: Scheme::HmacSha1,
        action,
        version,
        format,
        params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{HttpRequest, testkeys::OneKey, verify as verify_any};
    use chrono::TimeZone;

    fn vector_b() -> Params {
        Params::from_pairs([
            ("Action", "ResetDisk"),
            ("Format", "JSON"),
            ("Version", "2014-05-26"),
            ("AccessKeyId", "testid"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureVersion", "1.0"),
            ("SignatureNonce", "0123456789abcdef0123456789abcdef"),
            ("Timestamp", "2024-01-01T00:00:00Z"),
            ("DiskId", "d-bp199lyny9b3xxxx"),
            ("SnapshotId", "s-bp199lyny9b3xxxx"),
        ])
    }

    #[test]
    fn vector_a_official_doc() {
        let p = Params::from_pairs([
            ("Timestamp", "2016-02-23T12:46:24Z"),
            ("Format", "XML"),
            ("AccessKeyId", "testid"),
            ("Action", "DescribeRegions"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
            ("Version", "2014-05-26"),
            ("SignatureVersion", "1.0"),
        ]);
        let sts = string_to_sign("GET", &p);
        assert_eq!(
            sts,
            "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions%26Format%3DXML%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf%26SignatureVersion%3D1.0%26Timestamp%3D2016-02-23T12%253A46%253A24Z%26Version%3D2014-05-26"
        );
        assert_eq!(sign("testsecret", &sts), "OLeaidS1JvxuMvnyHOwuJ+uX5qY=");
    }

    #[test]
    fn vector_b_get_and_post() {
        let p = vector_b();
        assert_eq!(sign("testsecret", &string_to_sign("GET", &p)), "M7kEr82as9wQWNo70cWp0g20pYc=");
        assert_eq!(sign("testsecret", &string_to_sign("POST", &p)), "Zu5GOBvJaCf0GhUQLMeqM21sYAU=");
    }

    #[test]
    fn vector_c_darabonba() {
        let p = Params::from_pairs([("query", "test"), ("body", "test")]);
        assert_eq!(sign("secret", &string_to_sign("GET", &p)), "XlUyV4sXjOuX5FnjUz9IF9tm5rU=");
    }

    fn request(method: &str, query: String, body: &str) -> HttpRequest {
        HttpRequest {
            method: method.into(),
            query,
            headers: vec![("content-type".into(), "application/x-www-form-urlencoded".into())],
            body: body.as_bytes().to_vec(),
        }
    }

    fn signed_query(p: &Params, method: &str) -> String {
        let sig = sign("testsecret", &string_to_sign(method, p));
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in p.iter() {
            s.append_pair(k, v);
        }
        s.append_pair("Signature", &sig);
        s.finish()
    }

    #[test]
    fn verifies_get_query_and_post_form() {
        let now = Utc.with_ymd_and_hms(2024, 1, 1, 0, 5, 0).unwrap();
        let keys = OneKey("testid", "testsecret");
        let nonces = NonceCache::new();
        let p = vector_b();
        let v = verify_any(&request("GET", signed_query(&p, "GET"), ""), &keys, &nonces, now).unwrap();
        assert_eq!(v.action, "ResetDisk");
        assert_eq!(v.format, Format::Json);
        assert_eq!(v.params.get("DiskId"), Some("d-bp199lyny9b3xxxx"));
        assert_eq!(v.params.get("Signature"), None);
        // Same request replayed: the nonce is spent.
        let e = verify_any(&request("GET", signed_query(&p, "GET"), ""), &keys, &nonces, now).unwrap_err();
        assert_eq!(e.code, Code::SignatureNonceUsed);
        // POST with every parameter in a form body.
        let mut p2 = vector_b();
        p2 =
            Params::from_pairs(p2.iter().map(|(k, v)| {
                (k.to_string(), if k == "SignatureNonce" { "other".to_string() } else { v.to_string() })
            }));
        let v = verify_any(&request("POST", String::new(), &signed_query(&p2, "POST")), &keys, &nonces, now).unwrap();
        assert_eq!(v.params.get("SnapshotId"), Some("s-bp199lyny9b3xxxx"));
    }

    #[test]
    fn long_nonces_and_long_echoes_are_bounded() {
        let now = Utc.with_ymd_and_hms(2024, 1, 1, 0, 5, 0).unwrap();
        let keys = OneKey("testid", "testsecret");
        let with_nonce = |n: &str| {
            Params::from_pairs(
                vector_b()
                    .iter()
                    .map(|(k, v)| (k.to_string(), if k == "SignatureNonce" { n.to_string() } else { v.to_string() })),
            )
        };
        let long = "n".repeat(257);
        let q = signed_query(&with_nonce(&long), "GET");
        let e = verify_any(&request("GET", q, ""), &keys, &NonceCache::new(), now).unwrap_err();
        assert_eq!(e, ApiError::invalid("SignatureNonce"));
        let q = signed_query(&with_nonce(&"n".repeat(256)), "GET");
        assert!(verify_any(&request("GET", q, ""), &keys, &NonceCache::new(), now).is_ok());
        // A 2 MB request with a bad signature: the string to sign is echoed, cut.
        let mut big = vector_b();
        big = Params::from_pairs(
            big.iter().map(|(k, v)| (k.to_string(), v.to_string())).chain([("Pad".to_string(), "x".repeat(2 << 20))]),
        );
        let mut q = signed_query(&big, "GET");
        q.push_str("&Extra=1");
        let e = verify_any(&request("GET", q, ""), &keys, &NonceCache::new(), now).unwrap_err();
        assert_eq!(e.code, Code::SignatureDoesNotMatch);
        assert!(e.message.len() < 5000, "{} bytes", e.message.len());
        assert!(e.message.contains("more bytes)"));
    }

    #[test]
    fn rejects_bad_signature_skew_and_unknown_key() {
        let keys = OneKey("testid", "testsecret");
        let nonces = NonceCache::new();
        let p = vector_b();
        let q = signed_query(&p, "GET");
        let late = Utc.with_ymd_and_hms(2024, 1, 1, 0, 16, 0).unwrap();
        let e = verify_any(&request("GET", q.clone(), ""), &keys, &nonces, late).unwrap_err();
        assert_eq!(e.code, Code::InvalidTimeStampExpired);
        let now = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        let e = verify_any(&request("POST", q.clone(), ""), &keys, &nonces, now).unwrap_err();
        assert_eq!(e.code, Code::SignatureDoesNotMatch);
        assert!(e.message.ends_with(&string_to_sign("POST", &p)));
        let e = verify_any(&request("GET", q, ""), &OneKey("x", "y"), &nonces, now).unwrap_err();
        assert_eq!(e.code, Code::InvalidAccessKeyIdNotFound);
    }
}
