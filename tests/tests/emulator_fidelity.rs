//! Keeps the emulator honest where our invariants live: DynamoDB applies
//! each request atomically, so conditional transactions racing for the last
//! slots of a counter must admit exactly `capacity`. Stock `moto_server`
//! fails this (it admitted 118-123 of 100 here); `scripts/emulator.py`
//! passes. If this test fails, the tests below prove nothing.
//!
//! And SQS FIFO serves a message group whose messages are all visible again
//! as one batch (stock moto hands them out one visibility period apart).

use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};
use integration_tests::Stack;
use waiting_room::domain::{EventId, UserId};
use waiting_room::ports::{QueueConsumer, Redelivery};

const CAPACITY: u64 = 100;
const SESSIONS: usize = 320;
const CLIENTS: usize = 16;

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn concurrent_conditional_transactions_never_exceed_the_counter_condition() {
    let stack = Stack::new("fidelity").await;
    let table = stack.resources.table.clone();
    stack
        .dynamodb
        .put_item()
        .table_name(&table)
        .item("pk", s("COUNTER"))
        .item("active", n(0))
        .send()
        .await
        .unwrap();
    for i in 0..SESSIONS {
        stack
            .dynamodb
            .put_item()
            .table_name(&table)
            .item("pk", s(&format!("S#{i}")))
            .item("status", s("WAITING"))
            .send()
            .await
            .unwrap();
    }

    let tasks: Vec<_> = (0..CLIENTS)
        .map(|client| {
            // Each client gets its own connection pool, like separate Lambdas.
            let dynamodb = aws_sdk_dynamodb::Client::new(&stack.sdk);
            let table = table.clone();
            tokio::spawn(async move {
                for i in (client..SESSIONS).step_by(CLIENTS) {
                    let take_slot = Update::builder()
                        .table_name(&table)
                        .key("pk", s("COUNTER"))
                        .update_expression("ADD active :one")
                        .condition_expression("active < :cap")
                        .expression_attribute_values(":one", n(1))
                        .expression_attribute_values(":cap", n(CAPACITY))
                        .build()
                        .unwrap();
                    let activate = Update::builder()
                        .table_name(&table)
                        .key("pk", s(&format!("S#{i}")))
                        .update_expression("SET #s = :active")
                        .condition_expression("#s = :waiting")
                        .expression_attribute_names("#s", "status")
                        .expression_attribute_values(":active", s("ACTIVE"))
                        .expression_attribute_values(":waiting", s("WAITING"))
                        .build()
                        .unwrap();
                    // Cancellations are expected once the counter is full.
                    let _ = dynamodb
                        .transact_write_items()
                        .transact_items(TransactWriteItem::builder().update(take_slot).build())
                        .transact_items(TransactWriteItem::builder().update(activate).build())
                        .send()
                        .await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }

    let mut active = 0;
    let mut start = None;
    loop {
        let page = stack
            .dynamodb
            .scan()
            .table_name(&table)
            .set_exclusive_start_key(start)
            .send()
            .await
            .unwrap();
        active += page
            .items()
            .iter()
            .filter(|item| item.get("status") == Some(&s("ACTIVE")))
            .count();
        start = page.last_evaluated_key().cloned();
        if start.is_none() {
            break;
        }
    }
    let counter = stack
        .dynamodb
        .get_item()
        .table_name(&table)
        .key("pk", s("COUNTER"))
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    let counted = counter.item().and_then(|i| i.get("active")).cloned();
    stack.tear_down().await;
    assert_eq!(
        counted,
        Some(n(CAPACITY)),
        "the counter went past its condition"
    );
    assert_eq!(
        active as u64, CAPACITY,
        "more sessions were activated than the counter allowed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_of_a_fifo_group_given_back_together_come_back_together() {
    let stack = Stack::new("fifo").await;
    let join = stack.join_service(1);
    let event = EventId::parse("E-fifo").unwrap();
    for n in 0..3 {
        let user = UserId::parse(&format!("U{n}")).unwrap();
        join.join(event.clone(), user, None).await.unwrap();
    }
    let queue = stack.queue();
    let mut batch = Vec::new();
    for _ in 0..10 {
        batch.extend(queue.receive(10, Duration::from_secs(1)).await.unwrap());
        if batch.len() == 3 {
            break;
        }
    }
    assert_eq!(batch.len(), 3, "one group, three joins");
    queue
        .redeliver_after(&batch, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(
        queue.receive(10, Duration::ZERO).await.unwrap().is_empty(),
        "invisible for the pause"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let again = queue.receive(10, Duration::ZERO).await.unwrap();
    let ids = |b: &[waiting_room::ports::Delivery]| {
        b.iter().map(|d| d.message_id.clone()).collect::<Vec<_>>()
    };
    assert_eq!(
        ids(&again),
        ids(&batch),
        "the whole group, in order, at once"
    );
    assert!(again.iter().all(|d| d.receive_count == 2), "{again:?}");
    stack.tear_down().await;
}
