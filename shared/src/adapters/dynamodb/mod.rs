//! The store ports (`SessionStore`, `EventStore`, `LineStore`,
//! `ExpiryStore`) on DynamoDB. Each port operation is one request (a
//! transaction where more than one item must change together), so every
//! invariant is enforced by DynamoDB conditions, never by the caller.
//!
//! - `request.rs`: one conditional write described once, transactions,
//!   reads, and what an SDK error means;
//! - `sessions.rs`: a user's session (create with its claim, touch, end);
//! - `line.rs`: the event's counters, ticket counters, heads, the line and
//!   event indexes, numbering and admission;
//! - `expiry.rs`: stays that ran out;
//! - `items.rs` and `layout.rs`: how items are keyed and encoded.

mod expiry;
pub mod items;
pub mod layout;
mod line;
mod request;
mod sessions;

use aws_sdk_dynamodb::Client;

const WAITING: &str = "WAITING";
const ACTIVE: &str = "ACTIVE";

#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn table(&self) -> &str {
        &self.table
    }
}
