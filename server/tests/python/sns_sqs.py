"""A local SNS topic whose messages land in an SQS queue, through boto3: `create ENDPOINT`
makes both, subscribes the queue to the topic and prints the topic's ARN and the queue's URL;
`receive ENDPOINT QUEUE_URL` prints the message of each notification waiting in the queue, one
JSON line each, and deletes them."""

import json
import sys

import boto3

endpoint, command = sys.argv[1], sys.argv[2]
auth = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
sns, sqs = boto3.client("sns", **auth), boto3.client("sqs", **auth)
if command == "create":
    topic = sns.create_topic(Name="isobar-alerts")["TopicArn"]
    queue = sqs.create_queue(QueueName="isobar-alerts")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    print(topic, queue)
elif command == "receive":
    queue = sys.argv[3]
    while True:
        got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not got:
            break
        for message in got:
            envelope = json.loads(message["Body"])
            print(json.dumps({"subject": envelope.get("Subject"), "message": json.loads(envelope["Message"])}))
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
else:
    sys.exit(f"unknown command {command}")
