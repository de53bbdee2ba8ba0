//! The ECS 2014-05-26 wire layer, free of sockets and storage: parameters, signatures, the
//! typed action enum, response rendering and the error-code registry.

pub mod action;
pub mod auth;
pub mod capacity;
pub mod disks;
pub mod error;
pub mod groups;
pub mod images;
pub mod instance_settings;
pub mod instances;
pub mod keypairs;
pub mod node;
pub mod params;
pub mod policies;
pub mod regions;
pub mod render;
pub mod secgroups;
pub mod secrules;
pub mod snapshots;
pub mod tagging;
pub mod tasks;
pub mod vpc;
pub mod write;

pub use action::Action;
pub use error::{ApiError, Code};
pub use node::Node;

/// The ECS API version this server speaks (the VPC API's is [`vpc::VPC_API_VERSION`]).
pub const API_VERSION: &str = "2014-05-26";
