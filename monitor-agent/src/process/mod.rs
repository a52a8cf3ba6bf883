//! Processes: who a (TGID, generation) is, from exec/exit events and `/proc` (`names`), and
//! how kernel keys and events are named into workloads (`naming`).
pub mod names;
pub mod naming;
