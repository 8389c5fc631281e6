//! Start-up: the settings each function reads from its environment, the
//! wiring of real adapters into the services (one function per binary),
//! logging and metrics. The only place that knows which adapter serves which port.

pub mod config;
pub mod metrics;
pub mod telemetry;
pub mod wiring;
