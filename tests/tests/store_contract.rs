//! The DynamoDB store keeps the same contract as the in-memory one: each
//! check of `waiting_room::ports::contract` is a test of its own here,
//! against the emulator.

use integration_tests::Stack;

waiting_room::store_contract_tests!(Stack::new("contract"), Stack::store, Stack::tear_down);
