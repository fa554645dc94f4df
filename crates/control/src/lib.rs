//! The embedded control plane behind `tidal up`: a Kubernetes-style API over the SQLite store,
//! the controller that renders InferenceServices into their objects, and the supervisor that
//! runs replicas as local processes.

pub mod admission;
pub mod api;
pub mod autoscaling;
pub mod controller;
pub mod daemon;
pub mod events;
pub mod status;
pub mod supervisor;
