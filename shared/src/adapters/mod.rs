//! Adapters: DynamoDB and SQS for real, in-memory twins for tests.

pub mod aws;
pub mod dynamodb;
pub mod memory;
pub mod sns;
pub mod sqs;
pub mod streams;
