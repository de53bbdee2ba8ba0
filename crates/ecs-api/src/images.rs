//! The image family (API reference: DescribeImages, CreateImage, ImportImage, DeleteImage,
//! CopyImage, ModifyImageSharePermission, DescribeImageSharePermission), parsed into
//! [`Action`] variants.

use crate::action::{Action, Family};
use crate::error::{ApiError, Code};
use crate::params::{Paging, Params};

/// This family's actions, for [`crate::action::Action::parse`].
pub(crate) const FAMILY: Family = Family {
    names: &[
        "DescribeImages",
        "CreateImage",
        "ImportImage",
        "DeleteImage",
        "CopyImage",
        "ModifyImageSharePermission",
        "DescribeImageSharePermission",
    ],
    region_optional: &[],
    parse,
};

/// ModifyImageSharePermission's `AddAccount.N` / `RemoveAccount.N`: N runs from 1 to 10 and,
/// as the API reference says, accounts past the tenth are ignored.
pub const MAX_SHARE_ACCOUNTS_PER_CALL: usize = 10;

fn parse(name: &str, p: &Params) -> Option<Result<Action, ApiError>> {
    action(name, p).transpose()
}

fn action(name: &str, p: &Params) -> Result<Option<Action>, ApiError> {
    Ok(Some(match name {
        "DescribeImages" => Action::DescribeImages(DescribeImages {
            image_ids: p.opt_str("ImageId").map(|s| s.split(',').map(|x| x.trim().to_string()).collect()),
            image_name: p.opt_str("ImageName"),
            owner_alias: p.opt_str("ImageOwnerAlias"),
            owner_id: p.opt_str("ImageOwnerId"),
            snapshot_id: p.opt_str("SnapshotId"),
            status: {
                let raw = p.opt_str("Status").unwrap_or_else(|| "Available".into());
                let v: Vec<String> = raw.split(',').map(|x| x.trim().to_string()).filter(|x| !x.is_empty()).collect();
                const STATES: [&str; 6] =
                    ["Creating", "Waiting", "Available", "UnAvailable", "CreateFailed", "Deprecated"];
                if v.is_empty() || v.iter().any(|x| !STATES.contains(&x.as_str())) {
                    return Err(ApiError::invalid("Status"));
                }
                v
            },
            tags: p.tag_filter()?,
            paging: Paging::parse(p, 100)?,
        }),
        "CreateImage" => Action::CreateImage {
            snapshot_id: p.req_str("SnapshotId")?,
            image_name: p.opt_str("ImageName"),
            description: p.opt_str("Description"),
        },
        "ImportImage" => Action::ImportImage(import_image(p)?),
        "DeleteImage" => Action::DeleteImage { image_id: p.req_str("ImageId")?, force: p.bool_or("Force", false)? },
        "CopyImage" => Action::CopyImage(copy_image(p)?),
        "ModifyImageSharePermission" => Action::ModifyImageSharePermission(ModifyImageSharePermission {
            image_id: p.req_str("ImageId")?,
            add_accounts: share_accounts(p, "AddAccount")?,
            remove_accounts: share_accounts(p, "RemoveAccount")?,
            is_public: p.opt_bool("IsPublic")?,
            dry_run: p.bool_or("DryRun", false)?,
        }),
        "DescribeImageSharePermission" => Action::DescribeImageSharePermission {
            image_id: p.req_str("ImageId")?,
            page_number: p.opt_range("PageNumber", 1, i64::from(u32::MAX))?.unwrap_or(1) as u32,
            page_size: p.opt_range("PageSize", 1, 100)?.unwrap_or(10) as u32,
        },
        _ => return Ok(None),
    }))
}

#[derive(Debug, Clone, PartialEq)]
pub struct DescribeImages {
    pub image_ids: Option<Vec<String>>,
    pub image_name: Option<String>,
    pub owner_alias: Option<String>,
    /// `ImageOwnerId`: only shared images of this owner (it applies to shared images only).
    pub owner_id: Option<String>,
    pub snapshot_id: Option<String>,
    /// `Status`: comma-separated image states; the API's default is `Available` only.
    pub status: Vec<String>,
    /// `Tag.N.Key`/`Tag.N.Value`: every pair must match; a key alone matches any value.
    pub tags: Vec<(String, Option<String>)>,
    pub paging: Paging,
}

/// ImportImage's parameters (API reference ImportImage). Only the system disk's mapping
/// (`DiskDeviceMapping.1`) is imported; more mappings (data disk images) are refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportImage {
    pub image_name: Option<String>,
    pub description: Option<String>,
    /// `x86_64` (default), `i386` or `arm64`.
    pub architecture: String,
    /// `linux` (default) or `windows`.
    pub os_type: String,
    pub platform: Option<String>,
    /// `BIOS` (default) or `UEFI`.
    pub boot_mode: String,
    pub oss_bucket: String,
    pub oss_object: String,
    /// `RAW`, `QCOW2` or `VHD`, upper case; `None`: found from the file.
    pub format: Option<String>,
    /// GiB the image's system disk has at least (1–2048); `None`: the file's virtual size.
    pub disk_image_size: Option<i64>,
}

fn import_image(p: &Params) -> Result<ImportImage, ApiError> {
    let maps = p.repeat_struct("DiskDeviceMapping")?;
    if maps.len() > 1 {
        return Err(ApiError::invalid("DiskDeviceMapping.2"));
    }
    let m = maps.into_iter().next().unwrap_or_default();
    let get = |f: &str| m.get(f).filter(|v| !v.is_empty()).cloned();
    let need = |f: &str| get(f).ok_or_else(|| ApiError::missing(&format!("DiskDeviceMapping.1.{f}")));
    let format = match get("Format").map(|f| f.to_ascii_uppercase()) {
        None => None,
        Some(f) if ["RAW", "QCOW2", "VHD"].contains(&f.as_str()) => Some(f),
        Some(_) => return Err(ApiError::invalid("DiskDeviceMapping.1.Format")),
    };
    let size = get("DiskImageSize").or_else(|| get("DiskImSize"));
    let disk_image_size = match size {
        None => None,
        Some(s) => match s.parse::<i64>() {
            Ok(n) if (1..=2048).contains(&n) => Some(n),
            _ => return Err(ApiError::invalid("DiskDeviceMapping.1.DiskImageSize")),
        },
    };
    let one_of = |name: &str, allowed: &[&str], default: &str| -> Result<String, ApiError> {
        match p.opt_str(name) {
            None => Ok(default.to_string()),
            Some(v) if allowed.contains(&v.as_str()) => Ok(v),
            Some(_) => Err(ApiError::invalid(name)),
        }
    };
    let image_name = p.opt_str("ImageName");
    if image_name.as_deref().is_some_and(|n| !crate::params::valid_name(n, 128)) {
        return Err(Code::InvalidImageNameMalformed.into());
    }
    let description = p.opt_str("Description");
    if description.as_deref().is_some_and(|d| !crate::params::valid_description(d)) {
        return Err(Code::InvalidDescriptionMalformed.into());
    }
    Ok(ImportImage {
        image_name,
        description,
        architecture: one_of("Architecture", &["x86_64", "i386", "arm64"], "x86_64")?,
        os_type: one_of("OSType", &["linux", "windows"], "linux")?,
        platform: p.opt_str("Platform"),
        boot_mode: one_of("BootMode", &["BIOS", "UEFI"], "BIOS")?,
        oss_bucket: need("OSSBucket")?,
        oss_object: need("OSSObject")?,
        format,
        disk_image_size,
    })
}

/// CopyImage's parameters (API reference CopyImage): one of the caller's Available custom
/// images (or one shared with the caller, in its own region only) becomes a new image of the
/// caller in `destination_region_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyImage {
    pub image_id: String,
    /// `DestinationRegionId`; not required by the reference: the source region when absent.
    pub destination_region_id: Option<String>,
    /// `DestinationImageName`: 2–128 characters, a letter first, not `aliyun`/`acs:` first.
    pub name: Option<String>,
    /// `DestinationDescription`: 2–256 characters, not `http(s)://` first.
    pub description: Option<String>,
    pub encrypted: bool,
    pub kms_key_id: Option<String>,
    /// `Tag.N.Key` / `Tag.N.Value` of the copy.
    pub tags: Vec<(String, String)>,
    pub dry_run: bool,
}

fn copy_image(p: &Params) -> Result<CopyImage, ApiError> {
    let name = p.opt_str("DestinationImageName");
    if name.as_deref().is_some_and(|n| !image_name_ok(n)) {
        return Err(Code::InvalidDestinationImageNameMalformed.into());
    }
    let description = p.opt_str("DestinationDescription");
    if description.as_deref().is_some_and(|d| !crate::params::valid_description(d)) {
        return Err(Code::InvalidDestinationDescriptionMalformed.into());
    }
    let encrypted = p.opt_bool("Encrypted")?;
    let kms_key_id = p.opt_str("KMSKeyId");
    // Documented: a KMSKeyId needs Encrypted=true.
    if kms_key_id.is_some() && encrypted != Some(true) {
        return Err(Code::InvalidParameterEncryptedIllegal.into());
    }
    Ok(CopyImage {
        image_id: p.req_str("ImageId")?,
        destination_region_id: p.opt_str("DestinationRegionId"),
        name,
        description,
        encrypted: encrypted.unwrap_or(false),
        kms_key_id,
        tags: p.tags()?,
        dry_run: p.bool_or("DryRun", false)?,
    })
}

/// An image name by the API reference's rules (CopyImage's DestinationImageName): the naming
/// rules of every resource name, and not starting with `aliyun` or `acs:`.
pub fn image_name_ok(n: &str) -> bool {
    let lower = n.to_ascii_lowercase();
    crate::params::valid_name(n, 128) && !lower.starts_with("aliyun") && !lower.starts_with("acs:")
}

/// ModifyImageSharePermission's parameters (API reference ModifyImageSharePermission).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModifyImageSharePermission {
    pub image_id: String,
    /// `AddAccount.N`: account ids (as `OwnerId` shows them) to share with, at most the first
    /// [`MAX_SHARE_ACCOUNTS_PER_CALL`].
    pub add_accounts: Vec<String>,
    /// `RemoveAccount.N`: account ids to stop sharing with, likewise at most ten.
    pub remove_accounts: Vec<String>,
    /// `IsPublic`: publish as a community image (`true`, not offered here) or unpublish.
    pub is_public: Option<bool>,
    pub dry_run: bool,
}

/// `name.N` in order, the first ten only (the reference: "the system processes only the first
/// 10 account IDs. The excess account IDs are ignored."); repeated ids count once.
fn share_accounts(p: &Params, name: &str) -> Result<Vec<String>, ApiError> {
    let mut out: Vec<String> = Vec::new();
    for a in p.repeat_list(name)?.into_iter().take(MAX_SHARE_ACCOUNTS_PER_CALL) {
        let a = a.trim().to_string();
        if !a.is_empty() && !out.contains(&a) {
            out.push(a);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(name: &str, pairs: &[(&str, &str)]) -> Result<Action, ApiError> {
        let mut all: Vec<(&str, &str)> = vec![("RegionId", "cn-hangzhou")];
        all.extend_from_slice(pairs);
        crate::action::parse_pairs(name, &all)
    }

    #[test]
    fn copy_image_parses_and_checks_names() {
        let a = parse(
            "CopyImage",
            &[("ImageId", "m-1"), ("DestinationRegionId", "cn-shanghai"), ("DestinationImageName", "copy-1")],
        )
        .unwrap();
        let Action::CopyImage(c) = a else { panic!("{a:?}") };
        assert_eq!(c.destination_region_id.as_deref(), Some("cn-shanghai"));
        assert_eq!(c.name.as_deref(), Some("copy-1"));
        assert!(!c.encrypted && c.tags.is_empty());
        assert_eq!(parse("CopyImage", &[]).unwrap_err(), ApiError::missing("ImageId"));
        for bad in ["1abc", "aliyun-x", "ACS:x", "http://x", "a"] {
            let e = parse("CopyImage", &[("ImageId", "m-1"), ("DestinationImageName", bad)]).unwrap_err();
            assert_eq!(e.code, Code::InvalidDestinationImageNameMalformed, "{bad}");
        }
        let e = parse("CopyImage", &[("ImageId", "m-1"), ("DestinationDescription", "http://x")]).unwrap_err();
        assert_eq!(e.code, Code::InvalidDestinationDescriptionMalformed);
        let e = parse("CopyImage", &[("ImageId", "m-1"), ("KMSKeyId", "k")]).unwrap_err();
        assert_eq!(e.code, Code::InvalidParameterEncryptedIllegal);
        let a = parse("CopyImage", &[("ImageId", "m-1"), ("KMSKeyId", "k"), ("Encrypted", "true")]).unwrap();
        assert!(matches!(a, Action::CopyImage(CopyImage { encrypted: true, .. })));
        let e = parse("CopyImage", &[("ImageId", "m-1"), ("Tag.21.Key", "k")]).unwrap_err();
        assert_eq!(e.code, Code::InvalidTagCount);
    }

    #[test]
    fn share_accounts_keep_the_first_ten_once_each() {
        let mut pairs: Vec<(String, String)> = vec![("ImageId".into(), "m-1".into())];
        for n in 1..=12 {
            pairs.push((format!("AddAccount.{n}"), format!("{}", 100 + n)));
        }
        pairs.push(("RemoveAccount.1".into(), "7".into()));
        pairs.push(("RemoveAccount.2".into(), "7".into()));
        let refs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let Action::ModifyImageSharePermission(m) = parse("ModifyImageSharePermission", &refs).unwrap() else {
            panic!()
        };
        assert_eq!(m.add_accounts.len(), MAX_SHARE_ACCOUNTS_PER_CALL);
        assert_eq!(m.add_accounts[0], "101");
        assert_eq!(m.add_accounts[9], "110");
        assert_eq!(m.remove_accounts, vec!["7".to_string()]);
        let e = parse("ModifyImageSharePermission", &[("ImageId", "m-1"), ("IsPublic", "maybe")]).unwrap_err();
        assert_eq!(e, ApiError::invalid("IsPublic"));
        let e = parse("ModifyImageSharePermission", &[("AddAccount.1", "1")]).unwrap_err();
        assert_eq!(e, ApiError::missing("ImageId"));
    }

    #[test]
    fn describe_share_permission_pages_as_documented() {
        let a = parse("DescribeImageSharePermission", &[("ImageId", "m-1")]).unwrap();
        assert_eq!(a, Action::DescribeImageSharePermission { image_id: "m-1".into(), page_number: 1, page_size: 10 });
        for (k, v) in [("PageSize", "101"), ("PageSize", "0"), ("PageNumber", "0"), ("PageNumber", "x")] {
            let e = parse("DescribeImageSharePermission", &[("ImageId", "m-1"), (k, v)]).unwrap_err();
            assert_eq!(e, ApiError::invalid(k));
        }
        let e = Action::parse("DescribeImageSharePermission", &Params::from_pairs([("ImageId", "m-1")])).unwrap_err();
        assert_eq!(e, ApiError::missing("RegionId"));
    }
}
