//! The emulator goes away in the middle of a granter batch and comes back:
//! no capacity may leak and no user may be lost.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use integration_tests::proxy::FaultProxy;
use integration_tests::{Stack, emulator_endpoint, eventually, lifecycle};
use waiting_room::domain::{EventId, SessionStatus, UserId};
use waiting_room::ports::EventStore;

const OUTAGE: Duration = Duration::from_secs(3);

async fn outage_after(proxy: &FaultProxy, target: &str) {
    proxy.down_after(target);
    eventually(
        Duration::from_secs(30),
        &format!("the cut after {target}"),
        || async { proxy.is_down() },
    )
    .await;
    tokio::time::sleep(OUTAGE).await;
    proxy.up();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 6)]
async fn an_outage_mid_batch_loses_no_user_and_leaks_no_slot() {
    let direct = Stack::new("faults").await;
    direct.set_visibility_timeout(2).await;
    let proxy = FaultProxy::start(&emulator_endpoint().await).await;
    let through_proxy = direct.via(&proxy.endpoint).await;
    let e = EventId::parse("E-faults").unwrap();
    direct.store().set_capacity(&e, 4).await.unwrap();

    let join = direct.join_service(1);
    let mut joined = HashSet::new();
    for n in 0..24 {
        let user = UserId::parse(&format!("fan-{n}")).unwrap();
        joined.insert(
            join.join(e.clone(), user, None)
                .await
                .unwrap()
                .session()
                .id
                .clone(),
        );
    }

    // Granters reach the emulator only through the proxy; users do not.
    let granters = through_proxy.start_granters(2, &lifecycle(1_000), 1).await;
    let stop = Arc::new(AtomicBool::new(false));
    let leaver = {
        let (stop, commands, stack) = (stop.clone(), Arc::new(direct.commands()), direct.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                for s in stack.sessions().await {
                    if s.status() == SessionStatus::Active {
                        commands.leave(&s.id).await.unwrap();
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    // The write that files and admits goes through, its answer is lost, and
    // the emulator is gone; later the same in the middle of a delete.
    outage_after(&proxy, "TransactWriteItems").await;
    outage_after(&proxy, "DeleteMessageBatch").await;
    outage_after(&proxy, "TransactWriteItems").await;

    eventually(
        Duration::from_secs(90),
        "everyone admitted and gone",
        || async { direct.store().event_counters(&e, 1).await.unwrap().left == 24 },
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    leaver.await.unwrap();
    granters.stop().await;

    let sessions = direct.sessions().await;
    assert_eq!(
        sessions
            .iter()
            .map(|s| s.id.clone())
            .collect::<HashSet<_>>(),
        joined,
        "no user lost"
    );
    let mut numbers: Vec<u64> = sessions
        .iter()
        .filter_map(|s| s.admission().map(|a| a.admission_no))
        .collect();
    numbers.sort_unstable();
    assert_eq!(
        numbers,
        (1..=24).collect::<Vec<_>>(),
        "each admitted exactly once"
    );
    let counters = direct.store().event_counters(&e, 1).await.unwrap();
    assert_eq!(
        (counters.active, counters.admitted, counters.left),
        (0, 24, 24),
        "no slot leaked"
    );
    assert_eq!(
        direct
            .messages_in(&direct.resources.join_dead_letter_queue_url)
            .await,
        0
    );
    direct.tear_down().await;
}
