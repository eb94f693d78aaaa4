"""A local S3 server's bucket, through boto3: `create ENDPOINT BUCKET` makes it, `dump ENDPOINT
BUCKET DIR` writes each object's bytes to DIR under its key with `/` as `__`."""

import os
import sys

import boto3

endpoint, command, bucket = sys.argv[1], sys.argv[2], sys.argv[3]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
if command == "create":
    s3.create_bucket(Bucket=bucket)
elif command == "dump":
    out = sys.argv[4]
    os.makedirs(out, exist_ok=True)
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
            with open(os.path.join(out, item["Key"].replace("/", "__")), "wb") as f:
                f.write(body)
else:
    sys.exit(f"unknown command {command}")
