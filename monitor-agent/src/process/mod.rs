//! Processes: who a (TGID, generation) is, from exec/exit events and `/proc` (`names`), and
//! how kernel keys and events are named into workloads (`naming`), short-lived processes of
//! a churning parent under one name (`folding`).
pub mod folding;
pub mod names;
pub mod naming;
