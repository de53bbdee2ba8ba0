//! The tag actions of ECS 2014-05-26: TagResources, UntagResources and ListTagResources, and
//! the older AddTags, RemoveTags and DescribeTags (parameters and their documented limits;
//! the rules live in `control::ops::tags`).

use crate::action::{Action, Family};
use crate::error::{ApiError, Code};
use crate::params::{MAX_TAGS, Params};

/// Resources a tag action names (`ResourceType`, case-insensitive as the SDKs send it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagResourceType {
    Instance,
    Disk,
    Snapshot,
    /// Documented as taggable; images here carry no tags (`InvalidResourceId.NotSupported`).
    Image,
}

impl TagResourceType {
    /// The name ListTagResources answers with.
    pub fn as_str(self) -> &'static str {
        match self {
            TagResourceType::Instance => "instance",
            TagResourceType::Disk => "disk",
            TagResourceType::Snapshot => "snapshot",
            TagResourceType::Image => "image",
        }
    }

    fn parse(p: &Params) -> Result<TagResourceType, ApiError> {
        let raw = p.req_str("ResourceType")?;
        match raw.to_ascii_lowercase().as_str() {
            "instance" => Ok(TagResourceType::Instance),
            "disk" => Ok(TagResourceType::Disk),
            "snapshot" => Ok(TagResourceType::Snapshot),
            "image" => Ok(TagResourceType::Image),
            // Other documented types (securitygroup, eni, keypair, ...) are not taggable here
            // (key pairs and security groups keep the tags they were created with).
            "securitygroup"
            | "volume"
            | "eni"
            | "ddh"
            | "keypair"
            | "launchtemplate"
            | "reservedinstance"
            | "snapshotpolicy"
            | "elasticityassurance"
            | "capacityreservation"
            | "command"
            | "invocation"
            | "activation"
            | "managedinstance"
            | "prefixlist"
            | "port_range_list" => Err(Code::InvalidResourceIdNotSupported.into()),
            _ => Err(Code::InvalidResourceTypeNotFound.into()),
        }
    }
}

/// The most resources one tag action names (`ResourceId.N`, documented 1–50).
pub const MAX_RESOURCES: usize = 50;

#[derive(Debug, Clone, PartialEq)]
pub struct TagResources {
    pub resource_type: TagResourceType,
    pub resource_ids: Vec<String>,
    pub tags: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UntagResources {
    pub resource_type: TagResourceType,
    pub resource_ids: Vec<String>,
    pub tag_keys: Vec<String>,
    /// `All=true` without TagKey: remove every tag.
    pub all: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ListTagResources {
    pub resource_type: TagResourceType,
    /// Empty: every resource of the type that has a tag.
    pub resource_ids: Vec<String>,
    pub tags: Vec<(String, Option<String>)>,
    pub next_token: Option<String>,
}

fn resource_ids(p: &Params, required: bool) -> Result<Vec<String>, ApiError> {
    let ids = p.repeat_list("ResourceId")?;
    if required && ids.is_empty() {
        return Err(ApiError::missing("ResourceId.N"));
    }
    if ids.len() > MAX_RESOURCES {
        return Err(ApiError::invalid("ResourceId.N"));
    }
    Ok(ids)
}

/// DescribeTags: distinct (key, value) pairs of the caller's tagged resources, with how many
/// resources of each type carry each; optionally of one type or one resource, and only the
/// filter tags.
#[derive(Debug, Clone, PartialEq)]
pub struct DescribeTags {
    pub resource_type: Option<TagResourceType>,
    pub resource_id: Option<String>,
    pub tags: Vec<(String, Option<String>)>,
    /// (PageNumber from 1, PageSize 1–100).
    pub page: (u32, u32),
}

/// This family's actions, for [`crate::action::Action::parse`].
pub(crate) const FAMILY: Family = Family {
    names: &["TagResources", "UntagResources", "ListTagResources", "AddTags", "RemoveTags", "DescribeTags"],
    region_optional: &[],
    parse,
};

/// The action `name` if it is one of the tag actions, parsed; `None` for other names.
fn parse(name: &str, p: &Params) -> Option<Result<Action, ApiError>> {
    let parsed = match name {
        "TagResources" => (|| {
            let resource_type = TagResourceType::parse(p)?;
            let resource_ids = resource_ids(p, true)?;
            let tags = p.tags()?;
            if tags.is_empty() {
                return Err(ApiError::missing("Tag.N.Key"));
            }
            Ok(Action::TagResources(TagResources { resource_type, resource_ids, tags }))
        })(),
        "UntagResources" => (|| {
            let resource_type = TagResourceType::parse(p)?;
            let resource_ids = resource_ids(p, true)?;
            let tag_keys = p.repeat_list("TagKey")?;
            if tag_keys.len() > MAX_TAGS as usize {
                return Err(Code::InvalidTagCount.into());
            }
            let all = p.bool_or("All", false)?;
            Ok(Action::UntagResources(UntagResources { resource_type, resource_ids, tag_keys, all }))
        })(),
        "ListTagResources" => (|| {
            let resource_type = TagResourceType::parse(p)?;
            Ok(Action::ListTagResources(ListTagResources {
                resource_type,
                resource_ids: resource_ids(p, false)?,
                tags: p.tag_filter()?,
                next_token: p.opt_str("NextToken"),
            }))
        })(),
        // The older single-resource forms: AddTags and RemoveTags name one ResourceId.
        "AddTags" => (|| {
            let resource_type = TagResourceType::parse(p)?;
            let tags = p.tags()?;
            if tags.is_empty() {
                return Err(ApiError::missing("Tag.N.Key"));
            }
            Ok(Action::TagResources(TagResources { resource_type, resource_ids: vec![p.req_str("ResourceId")?], tags }))
        })(),
        "RemoveTags" => (|| {
            let resource_type = TagResourceType::parse(p)?;
            let resource_id = p.req_str("ResourceId")?;
            Ok(Action::RemoveTags { resource_type, resource_id, tags: p.tag_filter()? })
        })(),
        "DescribeTags" => (|| {
            let resource_type = match p.opt_str("ResourceType") {
                Some(_) => Some(TagResourceType::parse(p)?),
                None => None,
            };
            let number = p.opt_range("PageNumber", 1, i64::from(u32::MAX))?.unwrap_or(1) as u32;
            let size = p.opt_range("PageSize", 1, 100)?.unwrap_or(50) as u32;
            Ok(Action::DescribeTags(DescribeTags {
                resource_type,
                resource_id: p.opt_str("ResourceId"),
                tags: p.tag_filter()?,
                page: (number, size),
            }))
        })(),
        _ => return None,
    };
    Some(parsed)
}
