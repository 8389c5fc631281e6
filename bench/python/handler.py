"""The cold-start baseline: a Python Lambda handler as the best-known AWS
waiting room writes them, with the same two AWS clients our functions
create (DynamoDB and SQS), behind a minimal runtime loop like the one the
python3.x managed runtime runs. `make bench` starts it under the same
Runtime API stub as our binaries and times exec -> first event request."""

import json
import os
import urllib.request

import boto3

DYNAMODB = boto3.client("dynamodb")
SQS = boto3.client("sqs")
TABLE = os.environ.get("TABLE_NAME", "waiting-room")


def handler(event, _context):
    session = event.get("pathParameters", {}).get("id", "none")
    item = DYNAMODB.get_item(TableName=TABLE, Key={"pk": {"S": f"SESSION#{session}"}})
    status = 200 if "Item" in item else 404
    return {"statusCode": status, "body": json.dumps({"found": status == 200})}


def main():
    api = f"http://{os.environ['AWS_LAMBDA_RUNTIME_API']}/2018-06-01/runtime/invocation"
    while True:
        with urllib.request.urlopen(f"{api}/next") as response:
            request_id = response.headers["Lambda-Runtime-Aws-Request-Id"]
            event = json.loads(response.read())
        result = json.dumps(handler(event, None)).encode()
        urllib.request.urlopen(urllib.request.Request(f"{api}/{request_id}/response", data=result, method="POST"))


if __name__ == "__main__":
    main()
