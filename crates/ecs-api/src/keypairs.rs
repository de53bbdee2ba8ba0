//! The SSH key pair family (API reference: CreateKeyPair, ImportKeyPair, DescribeKeyPairs,
//! AttachKeyPair, DetachKeyPair, DeleteKeyPairs), parsed into [`Action`] variants. The key
//! material (generation, public key formats, fingerprints) is `control`'s.

use crate::action::{Action, Family};
use crate::error::{ApiError, Code};
use crate::params::Params;

/// This family's actions, for [`crate::action::Action::parse`].
pub(crate) const FAMILY: Family = Family {
    names: &["CreateKeyPair", "ImportKeyPair", "DescribeKeyPairs", "AttachKeyPair", "DetachKeyPair", "DeleteKeyPairs"],
    region_optional: &[],
    parse,
};

/// The most instances one AttachKeyPair or DetachKeyPair names (API reference: InstanceIds, up
/// to 50; more is `InstanceKeyPairLimitExceeded`).
pub const MAX_INSTANCES: usize = 50;

/// The most key pairs one DeleteKeyPairs names (API reference: KeyPairNames, up to 100).
pub const MAX_DELETE: usize = 100;

/// The most rows one DescribeKeyPairs page holds (API reference: PageSize, at most 50).
pub const MAX_PAGE_SIZE: i64 = 50;

/// CreateKeyPair (API reference CreateKeyPair): a new key pair whose private key is answered
/// once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateKeyPair {
    pub name: String,
    pub tags: Vec<(String, String)>,
    /// `ResourceGroupId`: the group it joins (`rg-…`).
    pub resource_group_id: Option<String>,
}

/// ImportKeyPair (API reference ImportKeyPair): a public key made elsewhere, as given
/// (`PublicKeyBody`, OpenSSH one-line format); `control` checks and fingerprints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportKeyPair {
    pub name: String,
    pub public_key_body: String,
    pub tags: Vec<(String, String)>,
    /// `ResourceGroupId`: the group it joins (`rg-…`).
    pub resource_group_id: Option<String>,
}

/// DescribeKeyPairs (API reference DescribeKeyPairs): filters and PageNumber/PageSize paging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribeKeyPairs {
    /// `KeyPairName`: exact, or with `*` wildcards (`*SshKey`, `SshKey*`, `*SshKey*`).
    pub name: Option<String>,
    /// `KeyPairFingerPrint`: exact.
    pub fingerprint: Option<String>,
    /// `IncludePublicKey` (default false): answer each pair's PublicKey.
    pub include_public_key: bool,
    pub resource_group_id: Option<String>,
    pub tags: Vec<(String, Option<String>)>,
    /// (PageNumber from 1, PageSize 1–50, default 10).
    pub page: (u32, u32),
}

/// AttachKeyPair or DetachKeyPair (API reference): one key pair, 1–50 instances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPairInstances {
    pub name: String,
    pub instance_ids: Vec<String>,
}

/// A KeyPairName as CreateKeyPair and ImportKeyPair document it: 2–128 characters, starting
/// with a letter, then letters, digits, `:`, `_`, `-` (and `.`, which ImportKeyPair lists),
/// not starting with `http://` or `https://`; else `InvalidKeyPairName.Malformed`.
fn key_pair_name(p: &Params) -> Result<String, ApiError> {
    let name = p.req_str("KeyPairName")?;
    if !crate::params::valid_name(&name, 128) {
        return Err(Code::InvalidKeyPairNameMalformed.into());
    }
    Ok(name)
}

/// A list parameter given as a JSON array (`["a","b"]`) or, as the reference also allows,
/// names separated by commas. `None` when it is malformed.
fn json_or_commas(raw: &str) -> Option<Vec<String>> {
    let t = raw.trim();
    let list: Vec<String> = if t.starts_with('[') {
        match serde_json::from_str(t) {
            Ok(l) => l,
            Err(_) if !t.contains('"') => serde_json::from_str(&t.replace('\'', "\"")).ok()?,
            Err(_) => return None,
        }
    } else {
        t.split(',').map(|s| s.trim().to_string()).collect()
    };
    let list: Vec<String> = list.into_iter().map(|s| s.trim().to_string()).collect();
    if list.is_empty() || list.iter().any(String::is_empty) {
        return None;
    }
    Some(list)
}

/// `InstanceIds` of AttachKeyPair and DetachKeyPair.
fn instance_ids(p: &Params) -> Result<Vec<String>, ApiError> {
    let raw = p.req_str("InstanceIds")?;
    let mut ids = json_or_commas(&raw).ok_or(Code::InvalidInstanceIdsValueNotSupported)?;
    if ids.len() > MAX_INSTANCES {
        return Err(Code::InstanceKeyPairLimitExceeded.into());
    }
    let mut seen = std::collections::BTreeSet::new();
    ids.retain(|i| seen.insert(i.clone()));
    Ok(ids)
}

fn parse(name: &str, p: &Params) -> Option<Result<Action, ApiError>> {
    action(name, p).transpose()
}

fn action(name: &str, p: &Params) -> Result<Option<Action>, ApiError> {
    Ok(Some(match name {
        "CreateKeyPair" => Action::CreateKeyPair(CreateKeyPair {
            name: key_pair_name(p)?,
            tags: p.tags()?,
            resource_group_id: crate::instance_settings::group_param(p)?,
        }),
        "ImportKeyPair" => {
            let name = key_pair_name(p)?;
            let public_key_body = p.req_str("PublicKeyBody")?;
            Action::ImportKeyPair(ImportKeyPair {
                name,
                public_key_body,
                tags: p.tags()?,
                resource_group_id: crate::instance_settings::group_param(p)?,
            })
        }
        "DescribeKeyPairs" => {
            let number = p.opt_range("PageNumber", 1, i64::from(u32::MAX))?.unwrap_or(1) as u32;
            let size = p.opt_range("PageSize", 1, MAX_PAGE_SIZE)?.unwrap_or(10) as u32;
            Action::DescribeKeyPairs(DescribeKeyPairs {
                name: p.opt_str("KeyPairName"),
                fingerprint: p.opt_str("KeyPairFingerPrint"),
                include_public_key: p.bool_or("IncludePublicKey", false)?,
                resource_group_id: p.opt_str("ResourceGroupId"),
                tags: p.tag_filter()?,
                page: (number, size),
            })
        }
        "AttachKeyPair" => {
            Action::AttachKeyPair(KeyPairInstances { name: p.req_str("KeyPairName")?, instance_ids: instance_ids(p)? })
        }
        "DetachKeyPair" => {
            Action::DetachKeyPair(KeyPairInstances { name: p.req_str("KeyPairName")?, instance_ids: instance_ids(p)? })
        }
        "DeleteKeyPairs" => {
            let raw = p.req_str("KeyPairNames")?;
            let mut names = json_or_commas(&raw).ok_or(Code::InvalidKeyPairNamesValueNotSupported)?;
            if names.len() > MAX_DELETE {
                return Err(Code::DeleteKeyPairsLimitExceeded.into());
            }
            let mut seen = std::collections::BTreeSet::new();
            names.retain(|n| seen.insert(n.clone()));
            Action::DeleteKeyPairs { names }
        }
        _ => return Ok(None),
    }))
}

/// A DescribeKeyPairs name filter as an SQLite GLOB pattern: `*` stays a wildcard, and the
/// other GLOB metacharacters (`?`, `[`) match themselves.
pub fn name_glob(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 4);
    for c in pattern.chars() {
        match c {
            '?' => out.push_str("[?]"),
            '[' => out.push_str("[[]"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    use crate::action::parse_pairs as parse;

    const R: (&str, &str) = ("RegionId", "cn-hangzhou");

    #[test]
    fn key_pair_names_follow_the_documented_rules() {
        let ok = parse("CreateKeyPair", &[R, ("KeyPairName", "testKeyPairName:v1_a-b")]).unwrap();
        assert_eq!(
            ok,
            Action::CreateKeyPair(CreateKeyPair {
                name: "testKeyPairName:v1_a-b".into(),
                tags: vec![],
                resource_group_id: None
            })
        );
        for bad in ["1abc", "a", "http://x", "has space", &format!("a{}", "b".repeat(128))] {
            let e = parse("CreateKeyPair", &[R, ("KeyPairName", bad)]).unwrap_err();
            assert_eq!(e.code, Code::InvalidKeyPairNameMalformed, "{bad}");
        }
        assert_eq!(parse("CreateKeyPair", &[R]).unwrap_err(), ApiError::missing("KeyPairName"));
        assert_eq!(parse("CreateKeyPair", &[("KeyPairName", "ab")]).unwrap_err(), ApiError::missing("RegionId"));
        let e = parse("ImportKeyPair", &[R, ("KeyPairName", "ab")]).unwrap_err();
        assert_eq!(e, ApiError::missing("PublicKeyBody"));
    }

    #[test]
    fn instance_and_name_lists_parse_as_documented() {
        let a = parse("AttachKeyPair", &[R, ("KeyPairName", "k1"), ("InstanceIds", "[\"i-1\", \"i-2\", \"i-1\"]")]);
        assert_eq!(
            a.unwrap(),
            Action::AttachKeyPair(KeyPairInstances {
                name: "k1".into(),
                instance_ids: vec!["i-1".into(), "i-2".into()]
            })
        );
        let d = parse("DetachKeyPair", &[R, ("KeyPairName", "k1"), ("InstanceIds", "i-1,i-2")]).unwrap();
        assert!(
            matches!(d, Action::DetachKeyPair(KeyPairInstances { ref instance_ids, .. }) if instance_ids.len() == 2)
        );
        let many = serde_json::to_string(&(0..51).map(|i| format!("i-{i}")).collect::<Vec<_>>()).unwrap();
        let e = parse("AttachKeyPair", &[R, ("KeyPairName", "k1"), ("InstanceIds", &many)]).unwrap_err();
        assert_eq!(e.code, Code::InstanceKeyPairLimitExceeded);
        for bad in ["[\"i-1\"", "[]", "[1]", "i-1,,i-2"] {
            let e = parse("AttachKeyPair", &[R, ("KeyPairName", "k1"), ("InstanceIds", bad)]).unwrap_err();
            assert_eq!(e.code, Code::InvalidInstanceIdsValueNotSupported, "{bad}");
        }
        assert_eq!(
            parse("AttachKeyPair", &[R, ("InstanceIds", "[\"i-1\"]")]).unwrap_err().code,
            Code::MissingParameter
        );
        let del = parse("DeleteKeyPairs", &[R, ("KeyPairNames", "['k1','k2']")]).unwrap();
        assert_eq!(del, Action::DeleteKeyPairs { names: vec!["k1".into(), "k2".into()] });
        let e = parse("DeleteKeyPairs", &[R, ("KeyPairNames", "[\"k1\"")]).unwrap_err();
        assert_eq!(e.code, Code::InvalidKeyPairNamesValueNotSupported);
        let many = serde_json::to_string(&(0..101).map(|i| format!("k{i}")).collect::<Vec<_>>()).unwrap();
        assert_eq!(
            parse("DeleteKeyPairs", &[R, ("KeyPairNames", &many)]).unwrap_err().code,
            Code::DeleteKeyPairsLimitExceeded
        );
        assert_eq!(parse("DeleteKeyPairs", &[R]).unwrap_err(), ApiError::missing("KeyPairNames"));
    }

    #[test]
    fn describe_pages_by_number_up_to_fifty() {
        match parse("DescribeKeyPairs", &[R, ("PageNumber", "2"), ("PageSize", "50"), ("IncludePublicKey", "true")]) {
            Ok(Action::DescribeKeyPairs(d)) => assert_eq!((d.page, d.include_public_key), ((2, 50), true)),
            other => panic!("{other:?}"),
        }
        match parse("DescribeKeyPairs", &[R]) {
            Ok(Action::DescribeKeyPairs(d)) => assert_eq!(d.page, (1, 10)),
            other => panic!("{other:?}"),
        }
        assert_eq!(parse("DescribeKeyPairs", &[R, ("PageSize", "51")]).unwrap_err(), ApiError::invalid("PageSize"));
        assert_eq!(parse("DescribeKeyPairs", &[R, ("PageNumber", "0")]).unwrap_err(), ApiError::invalid("PageNumber"));
    }

    #[test]
    fn name_filters_become_globs_with_only_star_special() {
        assert_eq!(name_glob("*SshKey*"), "*SshKey*");
        assert_eq!(name_glob("a?b[c]"), "a[?]b[[]c]");
    }
}
