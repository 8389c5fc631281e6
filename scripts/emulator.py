"""Start moto in server mode as a faithful stand-in for DynamoDB + SQS.

Two things differ from stock moto, both where our invariants live (see
docs/decisions/0002-emulator.md):

1. moto's threaded server applies concurrent DynamoDB requests without
   isolation: two TransactWriteItems can both pass a condition only one of
   them should. Real DynamoDB applies every request atomically, so this
   launcher serialises DynamoDB and DynamoDB Streams requests behind one lock.
   SQS requests stay concurrent, as they are in AWS.
2. moto evaluates a transaction's conditions one by one while applying it,
   and backs out by deep-copying every table it touches, once per item: slow
   in proportion to the whole table and its stream history. DynamoDB checks
   every condition against the state before the transaction, then applies
   all of it. `transact_write_items` below does exactly that and undoes only
   the items it touched if applying fails.
3. moto ignores TransactWriteItems' ClientRequestToken. The AWS SDKs set one
   and keep it across retries, so a transaction whose answer was lost (a
   timeout) is not applied twice: DynamoDB answers the retry with success for
   ten minutes. Without that, a retried join finds its own claim and session
   and looks like a collision. `transact_with_token` restores the behaviour.
4. moto keeps a FIFO message "pending" after it is visible again until a
   receive returns that very message, and blocks its group meanwhile: of
   several messages of one group given back together (a failed batch whose
   visibility was shortened), one comes back per visibility period. SQS
   serves a group whose messages are all visible again as one batch.
   `receive_message_fifo_faithful` forgets pending messages that are visible
   before choosing groups.
"""

import argparse
import copy
import json
import os
import signal
import sys
import threading
import time

from werkzeug.serving import run_simple

from moto.dynamodb.comparisons import get_filter_expression
from moto.dynamodb.exceptions import (
    MultipleTransactionsException,
    TooManyTransactionsException,
    TransactionCanceledException,
    TransactWriteSingleOpException,
)
from moto.core.exceptions import JsonRESTError
from moto.core.responses import ActionResult
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.responses import DynamoHandler
from moto.sqs.models import SQSBackend
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)

TRANSACTION_OPERATIONS = ("ConditionCheck", "Put", "Delete", "Update")

SERIALISED_TARGET_PREFIXES = ("DynamoDB_", "DynamoDBStreams_")
SLOW_REQUEST_SECONDS = 0.5


class SerialiseDynamoDb:
    """WSGI middleware: one DynamoDB request at a time, everything else concurrent."""

    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if not target.startswith(SERIALISED_TARGET_PREFIXES):
            return self.app(environ, start_response)
        with self.lock:
            # Materialise the body inside the lock so the whole request,
            # including any lazily produced response, is one atomic step.
            started = time.monotonic()
            body = list(self.app(environ, start_response))
            took = time.monotonic() - started
            if took > SLOW_REQUEST_SECONDS:
                print(f"slow DynamoDB request: {target} took {took:.2f} s", file=sys.stderr, flush=True)
            return body


def _operations(backend, transact_items):
    """(type, request, table, key) per item; refuses what DynamoDB refuses."""
    if len(transact_items) > 100:
        raise TooManyTransactionsException()
    operations, seen = [], set()
    for item in transact_items:
        if len(item) > 1:
            raise TransactWriteSingleOpException
        op_type, op = next(iter(item.items()))
        table = backend.get_table(op["TableName"])
        if op_type == "Put":
            key_names = [table.hash_key_attr] + ([table.range_key_attr] if table.range_key_attr else [])
            key = {name: op["Item"][name] for name in key_names}
        else:
            key = op["Key"]
        identity = (op["TableName"], str(sorted(key.items())))
        if identity in seen:
            raise MultipleTransactionsException()
        seen.add(identity)
        operations.append((op_type, op, table, key))
    return operations


def _check(backend, op_type, op, key):
    """One cancellation reason: (code, message, old item) or Nones."""
    try:
        if op_type not in TRANSACTION_OPERATIONS:
            raise ValueError("Unsupported transaction operation")
        current = backend.get_item(op["TableName"], key)
        condition = op.get("ConditionExpression")
        if condition is None:
            return (None, None, None)
        expression = get_filter_expression(
            condition, op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")
        )
        if expression.expr(current):
            return (None, None, None)
        wants_old = op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD"
        old = current.to_json()["Attributes"] if wants_old and current else None
        return ("ConditionalCheckFailed", "The conditional request failed", old)
    except Exception as error:  # reported per item, as moto does
        return (type(error).__name__, str(error), None)


def _apply(backend, op_type, op, key):
    names, values = op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")
    if op_type == "Put":
        backend.put_item(op["TableName"], op["Item"])
    elif op_type == "Delete":
        backend.delete_item(op["TableName"], key)
    elif op_type == "Update":
        backend.update_item(op["TableName"], key, op["UpdateExpression"], names, values)


def _restore(table, hash_value, range_value, before):
    items = table.items if range_value is None else table.items[hash_value]
    slot = hash_value if range_value is None else range_value
    if before is None:
        items.pop(slot, None)
    else:
        items[slot] = before


def transact_write_items(self, transact_items):
    """All conditions against the state before the transaction, then all writes."""
    operations = _operations(self, transact_items)
    reasons = [_check(self, op_type, op, key) for op_type, op, _, key in operations]
    if any(code is not None for code, _, _ in reasons):
        raise TransactionCanceledException(reasons)
    touched, stream_lengths = [], {}
    try:
        for op_type, op, table, key in operations:
            hash_value, range_value = self.get_keys_value(table, key)
            before = copy.deepcopy(table.get_item(hash_value, range_value))
            touched.append((table, hash_value, range_value, before))
            if table.stream_shard is not None:
                stream_lengths.setdefault(id(table), (table, len(table.stream_shard.items)))
            _apply(self, op_type, op, key)
    except Exception:
        for table, hash_value, range_value, before in reversed(touched):
            _restore(table, hash_value, range_value, before)
        for table, length in stream_lengths.values():
            del table.stream_shard.items[length:]
        raise


DynamoDBBackend.transact_write_items = transact_write_items

TOKEN_LIFETIME_SECONDS = 600
_applied_tokens = {}  # ClientRequestToken -> (request fingerprint, expiry)
_original_transact_handler = DynamoHandler.transact_write_items


def transact_with_token(self):
    """Answer a repeated token with the first call's success, as DynamoDB does."""
    token = self.body.get("ClientRequestToken")
    if token is None:
        return _original_transact_handler(self)
    now = time.time()
    for expired in [t for t, (_, until) in _applied_tokens.items() if until < now]:
        del _applied_tokens[expired]
    fingerprint = json.dumps(self.body.get("TransactItems"), sort_keys=True)
    if token in _applied_tokens:
        if _applied_tokens[token][0] != fingerprint:
            raise JsonRESTError(
                "com.amazonaws.dynamodb.v20120810#IdempotentParameterMismatchException",
                "The request uses the same client token as a previous, but non-identical request.",
            )
        return _success()
    result = _original_transact_handler(self)
    _applied_tokens[token] = (fingerprint, now + TOKEN_LIFETIME_SECONDS)
    return result


def _success():
    return ActionResult({"ConsumedCapacity": [], "ItemCollectionMetrics": {}})


DynamoHandler.transact_write_items = transact_with_token


_original_receive_message = SQSBackend.receive_message


def receive_message_fifo_faithful(self, queue_name, *args, **kwargs):
    """A message visible again is no longer in flight, and holds no group."""
    queue = self.get_queue(queue_name)
    for message in [m for m in queue.pending_messages if m.visible]:
        queue.pending_messages.discard(message)
    return _original_receive_message(self, queue_name, *args, **kwargs)


SQSBackend.receive_message = receive_message_fifo_faithful


def _exit_when_orphaned(parent):
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(0)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4566)
    parser.add_argument(
        "--exit-with-parent", action="store_true", help="stop when the process that started it ends (tests)"
    )
    args = parser.parse_args()
    if args.exit_with_parent:
        threading.Thread(target=_exit_when_orphaned, args=(os.getppid(),), daemon=True).start()
    os.environ.setdefault("MOTO_PORT", str(args.port))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(
        args.host,
        args.port,
        SerialiseDynamoDb(app),
        threaded=True,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
