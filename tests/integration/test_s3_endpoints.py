"""The S3 test endpoints themselves: reachable over HTTP, bucket present, SeaweedFS checks credentials."""

from __future__ import annotations

import uuid

import pytest
from botocore.exceptions import ClientError

from s3_services import S3Endpoint


@pytest.mark.parametrize("endpoint_fixture", ["s3_moto", "s3_seaweed"])
def test_endpoint_round_trip(endpoint_fixture: str, request: pytest.FixtureRequest) -> None:
    endpoint: S3Endpoint = request.getfixturevalue(endpoint_fixture)
    client = endpoint.client()
    key = f"fixture-check/{uuid.uuid4().hex}"
    client.put_object(Bucket=endpoint.bucket, Key=key, Body=b"hello s3")
    assert client.get_object(Bucket=endpoint.bucket, Key=key)["Body"].read() == b"hello s3"
    client.delete_object(Bucket=endpoint.bucket, Key=key)


def test_seaweed_refuses_wrong_credentials(s3_seaweed: S3Endpoint) -> None:
    wrong = S3Endpoint(s3_seaweed.url, s3_seaweed.bucket, s3_seaweed.access_key, "not-the-secret")
    with pytest.raises(ClientError) as excinfo:
        wrong.client().put_object(Bucket=wrong.bucket, Key="fixture-check/denied", Body=b"x")
    assert excinfo.value.response["Error"]["Code"] in (
        "SignatureDoesNotMatch",
        "AccessDenied",
        "InvalidAccessKeyId",
    )
