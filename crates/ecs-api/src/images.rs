//! The image family (API reference: DescribeImages, CreateImage, ImportImage, DeleteImage),
//! parsed into [`Action`] variants.

use crate::action::{Action, Family};
use crate::error::{ApiError, Code};
use crate::params::{Paging, Params};

/// This family's actions, for [`crate::action::Action::parse`].
pub(crate) const FAMILY: Family =
    Family { names: &["DescribeImages", "CreateImage", "ImportImage", "DeleteImage"], region_optional: &[], parse };

fn parse(name: &str, p: &Params) -> Option<Result<Action, ApiError>> {
    action(name, p).transpose()
}

fn action(name: &str, p: &Params) -> Result<Option<Action>, ApiError> {
    Ok(Some(match name {
        "DescribeImages" => Action::DescribeImages(DescribeImages {
            image_ids: p.opt_str("ImageId").map(|s| s.split(',').map(|x| x.trim().to_string()).collect()),
            image_name: p.opt_str("ImageName"),
            owner_alias: p.opt_str("ImageOwnerAlias"),
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
        _ => return Ok(None),
    }))
}

#[derive(Debug, Clone, PartialEq)]
pub struct DescribeImages {
    pub image_ids: Option<Vec<String>>,
    pub image_name: Option<String>,
    pub owner_alias: Option<String>,
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
