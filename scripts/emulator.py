"""Start moto in server mode as a faithful stand-in for DynamoDB + SQS.

moto's threaded server applies concurrent DynamoDB requests without isolation:
two TransactWriteItems can both pass a condition that only one of them should
(see docs/decisions/0002-emulator.md). Real DynamoDB applies every request
atomically, and our invariants (hard capacity, exactly-once admission) live in
those conditions, so this launcher serialises DynamoDB and DynamoDB Streams
requests behind one lock. SQS requests stay concurrent, as they are in AWS.
"""

import argparse
import os
import signal
import sys
import threading

from werkzeug.serving import run_simple

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)

SERIALISED_TARGET_PREFIXES = ("DynamoDB_", "DynamoDBStreams_")


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
            return list(self.app(environ, start_response))


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4566)
    args = parser.parse_args()
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
