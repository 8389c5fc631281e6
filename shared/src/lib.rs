//! The virtual waiting room: everything the function binaries, the admin
//! CLI, the explorer and the benchmarks share. The layers, from the inside
//! out (each uses only the ones above it):
//!
//! | module | what it holds |
//! | --- | --- |
//! | [`domain`] | identifiers, sessions, the line, admission planning, estimates, domain events, the admission token; pure, no AWS, no I/O |
//! | [`ports`] | the traits the services need from the outside (the session store, the queues, the event sink) and their error types; `ports::contract` is the store's executable contract |
//! | [`service`] | the use cases (join, status, session commands, granter, sweeper, checkout outcomes, publisher, admin), written against the ports |
//! | [`adapters`] | the ports on AWS (DynamoDB, DynamoDB Streams, SQS, SNS) and in memory; provisioning of the local stack; every AWS type stops here |
//! | [`api`] | the HTTP edge: routes, request parsing, JSON answers and errors (`lambda_http` types), for the public API and the admin API |
//! | [`runtime`] | the Lambda edges (typed events in, batch responses out) and the local pollers; `runtime::serve` starts every binary |
//! | [`setup`] | settings from the environment, the wiring of adapters into services, logging, metrics (embedded metric format) |
//!
//! A function's `main.rs` asks `setup::wiring` for its service and hands it
//! to `runtime::serve`. The API, the guarantees and the local stack are
//! described in the repository's `docs/`.

pub mod adapters;
pub mod api;
pub mod domain;
pub mod ports;
pub mod runtime;
pub mod service;
pub mod setup;
