pub mod cgroup;
pub mod docker;
pub mod kubernetes;
pub mod resolver;
pub mod selection;
