//! Adapters: the ports on AWS (DynamoDB, DynamoDB Streams, SQS, SNS), their
//! in-memory twins for tests and the explorer, and provisioning.

pub mod aws;
pub mod dynamodb;
pub mod memory;
pub mod provision;
pub mod sns;
pub mod sqs;
pub mod streams;
