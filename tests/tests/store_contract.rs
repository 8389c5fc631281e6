//! The DynamoDB store keeps the same contract as the in-memory one.

use integration_tests::Stack;
use waiting_room::ports::contract;

#[tokio::test]
async fn the_dynamodb_store_keeps_the_contract() {
    let stack = Stack::new("contract").await;
    contract::run_all(&stack.store()).await;
    stack.tear_down().await;
}
