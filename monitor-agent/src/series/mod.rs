//! Series: the family catalogue, who a series is about and which identity labels it carries,
//! and the tables that keep values across process lifetimes under one budget.
//! A leaf: it imports nothing else of the agent.
pub mod families;
pub mod labels;
pub mod publish;
pub mod table;
