//! Runtimes: each turns files on disk into a [`crate::model::Model`].

pub mod huggingface;
pub mod sklearn;
