//! `make bench`: cold start, memory, handler CPU, AWS calls per admitted
//! user, cost, admission latency, and the on-sale simulator.

pub mod cost;
pub mod counting;
pub mod e2e;
pub mod functions;
pub mod prices;
pub mod report;
pub mod runtime_api;
pub mod sections;
pub mod sim;
pub mod stats;
