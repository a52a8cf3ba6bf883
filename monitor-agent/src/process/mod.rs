//! Processes: who a (TGID, generation) is, from exec/exit events and `/proc`.
pub mod names;
