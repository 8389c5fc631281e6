//! The virtual waiting room: domain, ports, services, HTTP API and the
//! DynamoDB/SQS adapters shared by every function in the workspace.

pub mod adapters;
pub mod api;
pub mod config;
pub mod domain;
pub mod events;
pub mod ports;
pub mod provision;
pub mod runtime;
pub mod service;
pub mod telemetry;
pub mod token;
pub mod wiring;
