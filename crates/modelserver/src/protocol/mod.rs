//! One module per protocol, each a thin adapter over the [`crate::dataplane::DataPlane`] with its
//! errors mapped to its own bodies in one place.

pub mod openai;
pub mod v1;
pub mod v2;
