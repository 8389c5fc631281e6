//! Checks of what the waiting room promises during the worst minute of a
//! sale, beyond what the emulator can show (docs/decisions/0018-explorer.md):
//!
//! - `schedule`: a seeded schedule explorer that runs the real services
//!   against in-memory adapters that behave as AWS does (index lag, TTL,
//!   redelivery, visibility timeouts, stream retries, crashes between any
//!   two calls), and checks every promise as code;
//! - `model`: an exhaustive model check (stateright) of the admission
//!   protocol for a small configuration, every interleaving and crash point.

/// The admission protocol as a stateright model, checked exhaustively.
pub mod model;

/// The seeded schedule explorer over the real services.
pub mod schedule;

/// A long exploration written to a results file (`make explore`).
pub mod campaign;
