//! What the operator asked for: the command line and environment (`cli`), the config file
//! (`file`), the endpoint's web config (`web`), and the value checks they share (`checks`).
pub mod checks;
pub mod cli;
pub mod file;
pub mod otlp;
pub mod web;

pub use cli::{Config, LoadError, Subcommand, load_from};
