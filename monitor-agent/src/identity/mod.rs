pub mod cgroup;
pub mod docker;
mod http_get;
pub mod http_url;
pub mod kubernetes;
pub mod resolver;
pub mod selection;
