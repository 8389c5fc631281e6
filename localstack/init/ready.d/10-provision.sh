#!/usr/bin/env bash
# LocalStack init hook: the resources of a deployment named "waiting-room",
# the same as infra/template.yaml declares and `waiting-room-admin provision`
# creates (tests/tests/infra_consistency.rs checks table.json and queues.json).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

awslocal dynamodb create-table --cli-input-json "file://$here/table.json" >/dev/null
awslocal dynamodb wait table-exists --table-name waiting-room
awslocal dynamodb update-time-to-live --table-name waiting-room \
  --time-to-live-specification Enabled=true,AttributeName=ttl >/dev/null

# A queue and its dead-letter queue, as described in queues.json.
queue_pair() {
  local key=$1
  python3 - "$here/queues.json" "$key" <<'PY' > /tmp/queue-$key.env
import json, sys
spec = json.load(open(sys.argv[1]))[sys.argv[2]]
print(spec["name"]); print(spec["deadLetter"]); print(spec["maxReceiveCount"])
print(json.dumps(spec["attributes"])); print(json.dumps(spec["deadLetterAttributes"]))
PY
  mapfile -t spec < /tmp/queue-$key.env
  local dlq_url dlq_arn attributes
  dlq_url=$(awslocal sqs create-queue --queue-name "${spec[1]}" --attributes "${spec[4]}" --query QueueUrl --output text)
  dlq_arn=$(awslocal sqs get-queue-attributes --queue-url "$dlq_url" --attribute-names QueueArn --query Attributes.QueueArn --output text)
  attributes=$(python3 -c 'import json,sys; a=json.loads(sys.argv[1]); a["RedrivePolicy"]=json.dumps({"deadLetterTargetArn": sys.argv[2], "maxReceiveCount": int(sys.argv[3])}); print(json.dumps(a))' "${spec[3]}" "$dlq_arn" "${spec[2]}")
  awslocal sqs create-queue --queue-name "${spec[0]}" --attributes "$attributes" >/dev/null
}
queue_pair join
queue_pair checkout
# Unreadable stream records, and what the stream mappings give up on.
awslocal sqs create-queue --queue-name waiting-room-stream-dlq \
  --attributes "$(python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))["streamDeadLetter"]["attributes"]))' "$here/queues.json")" >/dev/null

# Every event without the admission token, and QUEUE_READY with it (the
# checkout's topic).
for topic in events admissions; do
  awslocal sns create-topic --name "waiting-room-$topic.fifo" \
    --attributes '{"FifoTopic":"true","ContentBasedDeduplication":"false","FifoThroughputScope":"MessageGroup","ArchivePolicy":"{\"MessageRetentionPeriod\":\"7\"}"}' >/dev/null
done
echo "waiting room resources ready"
