"""Remote stores (`s3://`, `gs://`, `http(s)://`) as zarr (obstore) and tensorstore open them:
the S3 endpoint chunkflow is pointed at (`--s3-endpoint`, `AWS_ENDPOINT_URL_S3`), credentials
from the standard chains, and a GCS emulator at `STORAGE_EMULATOR_HOST`."""

from __future__ import annotations

import json
import os

from chunkflow.errors import ChunkflowError

REMOTE = ("s3://", "gs://", "http://", "https://")


def is_remote(path: str) -> bool:
    return path.startswith(REMOTE)


def object_store(store: str):
    """The obstore store of a remote path: S3 at `AWS_ENDPOINT_URL_S3` (or `AWS_ENDPOINT_URL`)
    when set, with boto3's credential chain (variables, profiles, SSO, instance roles); GCS
    with obstore's own configuration (`GOOGLE_SERVICE_ACCOUNT`, application default
    credentials), or unauthenticated at `STORAGE_EMULATOR_HOST` (an emulator) when set."""
    try:
        from obstore.store import from_url
    except ImportError:
        raise ChunkflowError(f"{store}: remote zarr needs obstore (pip install obstore)") from None
    from chunkflow.aws import s3_endpoint

    kwargs, client = {}, {}
    if store.startswith("s3://"):
        endpoint = s3_endpoint()
        if endpoint:
            kwargs["endpoint"] = endpoint
            client["allow_http"] = endpoint.startswith("http://")
        kwargs.update(_boto3_credentials())
    elif store.startswith("gs://") and os.environ.get("STORAGE_EMULATOR_HOST"):
        # a GCS emulator (fake-gcs-server), named as Google's own clients take it
        host = os.environ["STORAGE_EMULATOR_HOST"]
        host = host if "://" in host else f"http://{host}"
        anonymous = {"gcs_base_url": host.rstrip("/"), "disable_oauth": True}
        anonymous.update(client_email="", private_key="", private_key_id="")
        kwargs["service_account_key"] = json.dumps(anonymous)
        client["allow_http"] = host.startswith("http://")
    elif store.startswith("http://"):
        client["allow_http"] = True
    try:
        return from_url(store.rstrip("/"), client_options=client, **kwargs)
    except Exception as err:
        from chunkflow.redact import redact

        raise ChunkflowError(f"{store}: cannot open the store ({redact(str(err))})") from None


def _boto3_credentials() -> dict:
    """Region and credentials from boto3's standard chain (profiles, SSO, roles) when the
    environment has no keys for obstore to read itself; nothing when boto3 finds none (a public
    bucket is then read unsigned). The keys are frozen now, fresh for each store opened: a
    live provider would call Python from obstore's threads, up to interpreter exit."""
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    found = {"region": region} if region else {}
    if os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_WEB_IDENTITY_TOKEN_FILE"):
        return found
    try:
        import boto3
    except ImportError:
        return found
    os.environ.setdefault("AWS_METADATA_SERVICE_TIMEOUT", "1")
    os.environ.setdefault("AWS_METADATA_SERVICE_NUM_ATTEMPTS", "1")
    try:
        session = boto3.session.Session()
        credentials = session.get_credentials()
        keys = credentials.get_frozen_credentials() if credentials is not None else None
    except Exception:  # a broken profile: let obstore read the environment
        return found
    if keys is None:
        return found
    if "region" not in found and session.region_name:
        found["region"] = session.region_name
    found.update(access_key_id=keys.access_key, secret_access_key=keys.secret_key)
    if keys.token:
        found["session_token"] = keys.token
    return found


def kvstore_spec(store: str) -> dict:
    """tensorstore's key-value store of a local folder or a remote path (its own credential
    chains: the AWS variables and files, Google's application default credentials)."""
    store = store.rstrip("/")
    if not store.startswith(REMOTE):
        return {"driver": "file", "path": store}
    if store.startswith(("http://", "https://")):
        return {"driver": "http", "base_url": store + "/"}
    scheme, _, rest = store.partition("://")
    bucket, _, prefix = rest.partition("/")
    spec = {"driver": "s3" if scheme == "s3" else "gcs", "bucket": bucket}
    if prefix:
        spec["path"] = prefix + "/"
    if scheme == "s3":
        from chunkflow.aws import s3_endpoint

        endpoint = s3_endpoint()
        if endpoint:
            spec["endpoint"] = endpoint
    return spec
