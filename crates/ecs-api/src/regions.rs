//! Regions and zones (API reference: DescribeRegions, DescribeZones), parsed into [`Action`]
//! variants.

use crate::action::{Action, Family};
use crate::error::ApiError;
use crate::params::Params;

/// This family's actions, for [`crate::action::Action::parse`].
pub(crate) const FAMILY: Family =
    Family { names: &["DescribeRegions", "DescribeZones"], region_optional: &["DescribeRegions"], parse };

fn parse(name: &str, _p: &Params) -> Option<Result<Action, ApiError>> {
    match name {
        "DescribeRegions" => Some(Ok(Action::DescribeRegions)),
        "DescribeZones" => Some(Ok(Action::DescribeZones)),
        _ => None,
    }
}
