//! Every AWS SDK call counted by component and operation, with the capacity
//! units DynamoDB bills for it: an interceptor on each client, so nothing
//! depends on logs.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeSerializationInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

/// Calls and billed units of one (component, operation).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Tally {
    pub calls: u64,
    /// DynamoDB write request units (0 for other services).
    pub write_units: f64,
    /// DynamoDB read request units (0 for other services).
    pub read_units: f64,
}

#[derive(Debug, Clone, Default)]
pub struct CallLedger(Arc<Mutex<BTreeMap<(String, String), Tally>>>);

impl CallLedger {
    fn record(&self, component: &str, operation: &str, write_units: f64, read_units: f64) {
        let mut ledger = match self.0.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let tally = ledger
            .entry((component.to_owned(), operation.to_owned()))
            .or_default();
        tally.calls += 1;
        tally.write_units += write_units;
        tally.read_units += read_units;
    }

    pub fn snapshot(&self) -> Calls {
        match self.0.lock() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn interceptor(&self, component: &str) -> CountingInterceptor {
        CountingInterceptor {
            component: component.to_owned(),
            ledger: self.clone(),
        }
    }
}

/// Calls by (component, operation), as counted up to some moment.
pub type Calls = BTreeMap<(String, String), Tally>;

/// The sum over the operations of `component`.
pub fn component(calls: &Calls, component: &str) -> Tally {
    calls
        .iter()
        .filter(|((c, _), _)| c == component)
        .fold(Tally::default(), |sum, (_, t)| Tally {
            calls: sum.calls + t.calls,
            write_units: sum.write_units + t.write_units,
            read_units: sum.read_units + t.read_units,
        })
}

#[derive(Debug, Clone)]
pub struct CountingInterceptor {
    component: String,
    ledger: CallLedger,
}

impl Intercept for CountingInterceptor {
    fn name(&self) -> &'static str {
        "CountingInterceptor"
    }

    // Not `read_before_execution`: the operation's metadata is in the
    // config bag only once its runtime plugins have run.
    fn read_before_serialization(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let operation = cfg
            .load::<Metadata>()
            .map_or("unknown", |m| m.name())
            .to_owned();
        let (write_units, read_units) = dynamodb_units(&operation, context);
        self.ledger
            .record(&self.component, &operation, write_units, read_units);
        Ok(())
    }
}

/// The request units DynamoDB bills for one call, for our items (all under
/// 1 KB): a write 1 WRU, each item of a transaction 2, a strongly
/// consistent read 1 RRU per item (a query: per 4 KB read, at least 1).
fn dynamodb_units(
    operation: &str,
    context: &BeforeSerializationInterceptorContextRef<'_>,
) -> (f64, f64) {
    use aws_sdk_dynamodb::operation as op;
    let input = context.input();
    match operation {
        "PutItem" | "UpdateItem" | "DeleteItem" => (1.0, 0.0),
        "TransactWriteItems" => {
            let items = input
                .downcast_ref::<op::transact_write_items::TransactWriteItemsInput>()
                .map_or(1, |i| i.transact_items().len());
            (2.0 * items as f64, 0.0)
        }
        "GetItem" | "Query" => (0.0, 1.0),
        "BatchGetItem" => {
            let keys = input
                .downcast_ref::<op::batch_get_item::BatchGetItemInput>()
                .and_then(|i| i.request_items())
                .map_or(1, |items| items.values().map(|k| k.keys().len()).sum());
            (0.0, keys as f64)
        }
        _ => (0.0, 0.0),
    }
}
