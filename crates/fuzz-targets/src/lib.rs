//! Fuzzing entry points. Each takes arbitrary bytes, drives one piece of code that reads
//! untrusted input, and panics only when a property the server relies on fails (a panic in
//! the code under test counts too). The cargo-fuzz targets in `fuzz/fuzz_targets` call these;
//! `tests/corpus.rs` replays the saved corpus and a fixed pseudo-random set through them in
//! every `cargo test`, so a finding once saved stays a regression test.
//!
//! | target | what it reads |
//! |---|---|
//! | [`params`] | query and form parameters, then every action's typed parsing |
//! | [`sign_v1`] | HMAC-SHA1 (SignatureVersion 1.0) canonicalisation and verification |
//! | [`sign_v3`] | ACS3-HMAC-SHA256 Authorization headers, canonical query and headers |
//! | [`nbd_frames`] | NBD option headers and payloads, transmission request headers |
//! | [`render`] | JSON and XML response rendering of any value |

use chrono::{TimeZone, Utc};
use ecs_api::auth::{self, HttpRequest, KeyInfo, KeyStore, NonceCache};
use ecs_api::params::{Paging, Params, percent_encode};
use ecs_api::{Action, Code, Node};

/// A fuzzing entry point: arbitrary bytes in, a panic when a property fails.
pub type Target = fn(&[u8]);

/// Every named target, for the replay test and `scripts/fuzz.sh`.
pub const TARGETS: &[(&str, Target)] =
    &[("params", params), ("sign_v1", sign_v1), ("sign_v3", sign_v3), ("nbd_frames", nbd_frames), ("render", render)];

/// `data` cut at NUL bytes into at most `n` parts (the last keeps the rest), as text.
fn parts(data: &[u8], n: usize) -> Vec<String> {
    let mut out: Vec<String> = data.splitn(n, |b| *b == 0).map(|p| String::from_utf8_lossy(p).into_owned()).collect();
    out.resize(n, String::new());
    out
}

/// Parameters from a query and a form body, then the typed request of every action.
pub fn params(data: &[u8]) {
    let [action, query, form] = <[String; 3]>::try_from(parts(data, 3)).unwrap_or_default();
    let Ok(p) = Params::from_query_and_form(&query, Some(form.as_bytes())) else {
        return;
    };
    let _ = p.tags();
    let _ = p.tag_filter();
    let _ = p.json_list("DiskIds", 100);
    let _ = Paging::parse(&p, 100);
    let _ = Action::parse(&action, &p);
    for a in ecs_api::action::action_names() {
        let _ = Action::parse(a, &p);
    }
}

/// One key that the signature targets sign with.
struct OneKey;

const AK: &str = "fuzz-ak";
const SECRET: &str = "fuzz-secret";

impl KeyStore for OneKey {
    fn lookup(&self, id: &str) -> Option<KeyInfo> {
        (id == AK).then(|| KeyInfo { account_id: "fuzz-account".into(), secret: SECRET.into(), enabled: true })
    }
}

/// The fixed clock the signature targets run at.
fn now() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single().unwrap_or_default()
}

/// Any parameters, signed the way a client signs them, must pass the signature check: the
/// percent-encoding on the client's side and the decoding on the server's agree for every
/// string. The raw bytes as a query must be refused or accepted, never panic.
pub fn sign_v1(data: &[u8]) {
    let [raw_query, pairs] = <[String; 2]>::try_from(parts(data, 2)).unwrap_or_default();
    let nonces = NonceCache::new();
    let raw = HttpRequest { method: "GET".into(), query: raw_query, headers: Vec::new(), body: Vec::new() };
    let _ = auth::verify(&raw, &OneKey, &nonces, now());

    if let Err(e) = signed_v1(&pairs)
        && e.code == Code::SignatureDoesNotMatch
    {
        panic!("a correctly signed request was refused: {e:?}");
    }
}

/// A DescribeRegions request with `pairs` (`k=v` joined by U+0001) as extra parameters,
/// signed as a client signs it, through the server's verification.
fn signed_v1(pairs: &str) -> Result<(), ecs_api::ApiError> {
    let mut params: Vec<(String, String)> = vec![
        ("Action".into(), "DescribeRegions".into()),
        ("Version".into(), "2014-05-26".into()),
        ("AccessKeyId".into(), AK.into()),
        ("SignatureMethod".into(), "HMAC-SHA1".into()),
        ("SignatureVersion".into(), "1.0".into()),
        ("SignatureNonce".into(), "fuzz-nonce".into()),
        ("Timestamp".into(), "2026-01-01T00:00:00Z".into()),
        ("Format".into(), "JSON".into()),
    ];
    for pair in pairs.split('\u{1}') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let name = format!("X{k}");
        if !params.iter().any(|(have, _)| *have == name) {
            params.push((name, v.to_string()));
        }
    }
    let sts = auth::v1::string_to_sign("GET", &Params::from_pairs(params.clone()));
    params.push(("Signature".into(), auth::v1::sign(SECRET, &sts)));
    let query: Vec<String> =
        params.iter().map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v))).collect();
    let req = HttpRequest { method: "GET".into(), query: query.join("&"), headers: Vec::new(), body: Vec::new() };
    auth::verify(&req, &OneKey, &NonceCache::new(), now()).map(|_| ())
}

/// Any Authorization header, query, content type and body through the ACS3 path.
pub fn sign_v3(data: &[u8]) {
    let [authorization, query, content_type, body] = <[String; 4]>::try_from(parts(data, 4)).unwrap_or_default();
    let _ = auth::v3::parse_authorization(&authorization);
    let _ = auth::v3::canonical_query(&query);
    let headers = vec![
        ("authorization".to_string(), format!("ACS3-HMAC-SHA256 {authorization}")),
        ("content-type".to_string(), content_type),
        ("x-acs-action".to_string(), "DescribeRegions".to_string()),
        ("x-acs-version".to_string(), "2014-05-26".to_string()),
        ("x-acs-date".to_string(), "2026-01-01T00:00:00Z".to_string()),
        ("x-acs-signature-nonce".to_string(), "n".to_string()),
    ];
    let signed: Vec<String> = headers.iter().map(|(k, _)| k.clone()).collect();
    let _ = auth::v3::canonical_headers(&headers, &signed);
    let req = HttpRequest { method: "POST".into(), query, headers, body: body.into_bytes() };
    let _ = auth::verify(&req, &OneKey, &NonceCache::new(), now());
}

/// NBD framing: the first byte picks the parser, the rest is its input. A transmission
/// header that decodes must encode back to the same bytes.
pub fn nbd_frames(data: &[u8]) {
    use nbd::proto;
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 4 {
        0 => {
            if let Some(h) = rest.get(..16).and_then(|h| <&[u8; 16]>::try_from(h).ok()) {
                let _ = proto::decode_option_header(h);
            }
        }
        1 => {
            let _ = proto::parse_info_request(rest);
        }
        2 => {
            let _ = proto::parse_meta_request(rest);
        }
        _ => {
            if let Ok(r) = proto::Request::decode(rest) {
                assert_eq!(&r.encode()[..], &rest[..proto::REQUEST_LEN], "decode and encode disagree");
                let _ = r.payload_len();
            }
        }
    }
}

/// Whether every object key in `v` is a plain name, as every key the server writes is (keys
/// never come from a request, so XML's element-name rules are the server's to keep).
fn plain_keys(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Object(m) => m.iter().all(|(k, v)| {
            k.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && k.chars().all(|c| c.is_ascii_alphanumeric())
                && plain_keys(v)
        }),
        serde_json::Value::Array(items) => items.iter().all(plain_keys),
        _ => true,
    }
}

/// Any JSON value, and any text as a field, rendered as JSON (which must read back as the
/// same value) and as XML (which must be well-formed).
pub fn render(data: &[u8]) {
    use ecs_api::auth::Format;
    use ecs_api::render::success;
    let text = String::from_utf8_lossy(data).into_owned();
    let mut trees = vec![Node::from(serde_json::json!({"Name": text, "List": {"Item": [text, 1, null]}}))];
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data)
        && v.is_object()
        && plain_keys(&v)
    {
        trees.push(Node::from(v));
    }
    for tree in trees {
        let json = success("Fuzz", Format::Json, "RID", tree.clone()).body;
        let back: serde_json::Value = match serde_json::from_str(&json) {
            Ok(v) => v,
            Err(e) => panic!("rendered JSON does not parse: {e}: {json}"),
        };
        let mut want = serde_json::json!({"RequestId": "RID"});
        if let (Some(w), serde_json::Value::Object(fields)) = (want.as_object_mut(), tree.clone().into_value()) {
            w.extend(fields);
        }
        assert_eq!(back, want, "JSON does not round-trip");
        let xml = success("Fuzz", Format::Xml, "RID", tree).body;
        let mut reader = quick_xml::Reader::from_str(&xml);
        loop {
            match reader.read_event() {
                Ok(quick_xml::events::Event::Eof) => break,
                Ok(quick_xml::events::Event::Text(t)) => {
                    if let Err(e) = t.unescape() {
                        panic!("XML text does not unescape: {e}: {xml}");
                    }
                }
                Ok(_) => {}
                Err(e) => panic!("rendered XML is not well-formed: {e}: {xml}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signing_property_is_not_vacuous() {
        assert_eq!(signed_v1("Name=a b*~%\u{1}Tag=\u{4f60}\u{1}Q=+&="), Ok(()));
    }
}
