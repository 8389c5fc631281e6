//! The sections of the results file, each measured and written by its own
//! module; `main.rs` only parses the command and puts them in order.

pub mod calls;
pub mod cpu;
pub mod footprint;
pub mod simulation;
