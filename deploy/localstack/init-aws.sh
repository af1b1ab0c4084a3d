#!/usr/bin/env bash
# LocalStack READY hook (mounted into /etc/localstack/init/ready.d/ by docker-compose.yml): creates the
# AWS resources aws-s3-service uses, the same way devtools/bootstrap.py does for moto:
#   - a versioned bucket,
#   - an SNS topic,
#   - an SQS queue with a dead-letter queue (redrive maxReceiveCount 5, DLQ retention 14 days),
#     visibility timeout 30 s (the app heartbeat's step) and a queue policy letting the topic and the
#     bucket send to it,
#   - the SNS->SQS subscription (enveloped delivery: RawMessageDelivery false),
#   - the S3->SQS notification for s3:ObjectCreated:*.
# Safe to run again. docker-compose's LocalStack healthcheck only turns healthy once this script has
# finished without error (GET /_localstack/init/ready), and the app waits for that.
set -euo pipefail

region="${AWS_DEFAULT_REGION:-us-east-1}"
bucket="${S3_BUCKET_NAME:-aws-s3-service-dev}"
topic="${SNS_TOPIC_NAME:-aws-s3-service-events}"
queue="${SQS_QUEUE_NAME:-aws-s3-service-ingest}"
dlq="${SQS_DLQ_NAME:-aws-s3-service-ingest-dlq}"
max_receive_count="${SQS_MAX_RECEIVE_COUNT:-5}"
visibility_timeout="${SQS_VISIBILITY_TIMEOUT_SECONDS:-30}"
dlq_retention_seconds=$((14 * 24 * 3600))
notification_id="aws-s3-service-ingest"

# awslocal is the AWS CLI pointed at this LocalStack; every call names the region explicitly.
aws_() {
    awslocal --region "${region}" --output text "$@"
}

# A JSON string literal holding $1 (for JSON documents nested in JSON attribute values).
json_string() {
    local value="${1//\\/\\\\}"
    printf '"%s"' "${value//\"/\\\"}"
}

queue_arn_of() {
    aws_ sqs get-queue-attributes --queue-url "$1" --attribute-names QueueArn \
        --query 'Attributes.QueueArn'
}

echo "init-aws: bucket ${bucket} (versioned)"
if ! aws_ s3api head-bucket --bucket "${bucket}" >/dev/null 2>&1; then
    if [[ "${region}" == "us-east-1" ]]; then
        aws_ s3api create-bucket --bucket "${bucket}" >/dev/null
    else
        aws_ s3api create-bucket --bucket "${bucket}" \
            --create-bucket-configuration "LocationConstraint=${region}" >/dev/null
    fi
fi
aws_ s3api put-bucket-versioning --bucket "${bucket}" --versioning-configuration Status=Enabled

echo "init-aws: topic ${topic}"
topic_arn="$(aws_ sns create-topic --name "${topic}" --query TopicArn)"

echo "init-aws: dead-letter queue ${dlq}"
dlq_url="$(aws_ sqs create-queue --queue-name "${dlq}" --query QueueUrl)"
dlq_arn="$(queue_arn_of "${dlq_url}")"
aws_ sqs set-queue-attributes --queue-url "${dlq_url}" \
    --attributes "{\"MessageRetentionPeriod\":\"${dlq_retention_seconds}\"}"

echo "init-aws: queue ${queue} (redrive to ${dlq} after ${max_receive_count} receives)"
queue_url="$(aws_ sqs create-queue --queue-name "${queue}" --query QueueUrl)"
queue_arn="$(queue_arn_of "${queue_url}")"
account="$(cut -d: -f5 <<<"${queue_arn}")"
partition="$(cut -d: -f2 <<<"${queue_arn}")"
redrive="{\"deadLetterTargetArn\":\"${dlq_arn}\",\"maxReceiveCount\":${max_receive_count}}"
# One line: a raw newline is not allowed inside the JSON string the policy is nested in.
policy="$(tr -d '\n' <<EOF
{"Version":"2012-10-17","Statement":[
{"Sid":"AllowTopic","Effect":"Allow","Principal":{"Service":"sns.amazonaws.com"},"Action":"sqs:SendMessage",
"Resource":"${queue_arn}","Condition":{"ArnEquals":{"aws:SourceArn":"${topic_arn}"}}},
{"Sid":"AllowBucket","Effect":"Allow","Principal":{"Service":"s3.amazonaws.com"},"Action":"sqs:SendMessage",
"Resource":"${queue_arn}","Condition":{"ArnEquals":{"aws:SourceArn":"arn:${partition}:s3:::${bucket}"},
"StringEquals":{"aws:SourceAccount":"${account}"}}}]}
EOF
)"
attributes="{\"VisibilityTimeout\":\"${visibility_timeout}\",\"RedrivePolicy\":$(json_string "${redrive}"),\"Policy\":$(json_string "${policy}")}"
aws_ sqs set-queue-attributes --queue-url "${queue_url}" --attributes "${attributes}"

echo "init-aws: subscription ${topic} -> ${queue}"
subscription_arn="$(aws_ sns subscribe --topic-arn "${topic_arn}" --protocol sqs \
    --notification-endpoint "${queue_arn}" --return-subscription-arn --query SubscriptionArn)"
# Enveloped delivery: the consumer tells SNS messages from S3 events by the envelope.
aws_ sns set-subscription-attributes --subscription-arn "${subscription_arn}" \
    --attribute-name RawMessageDelivery --attribute-value false

echo "init-aws: notification s3://${bucket} ObjectCreated -> ${queue}"
aws_ s3api put-bucket-notification-configuration --bucket "${bucket}" --notification-configuration \
    "{\"QueueConfigurations\":[{\"Id\":\"${notification_id}\",\"QueueArn\":\"${queue_arn}\",\"Events\":[\"s3:ObjectCreated:*\"]}]}"

cat <<EOF
init-aws: done
S3_BUCKET_NAME=${bucket}
SNS_TOPIC_ARN=${topic_arn}
SQS_QUEUE_URL=${queue_url}
SQS_DLQ_URL=${dlq_url}
EOF
