//! One room per signal: each owns its kernel-key decoding, its series tables and its
//! publishing.
pub mod http;
pub mod syscall_names;
pub mod tcp;
