"""AWS clients built from the project's configuration, and AWS failures turned into one-line errors.

The AWS SDK is imported here and only here, inside functions, so nothing that does not talk to AWS
pays for it (``dbtool --help`` and every local command). It is botocore, boto3's engine, used
directly: boto3 adds nothing we use and its import (s3transfer) costs another ~40 ms on every run
of ``rds-update-sg-rule``. Settings come from the same place as the rest of dbtool's (environment,
then ``.env``): region, profile, access keys and ``AWS_ENDPOINT_URL``. Credentials not set there
are found by botocore's own chain (shared files, SSO, instance roles).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from dbtool.errors import DbtoolError

REGION_VARIABLES = ("AWS_REGION", "AWS_DEFAULT_REGION")
CREDENTIALS_HINT = (
    "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (gp env in Gitpod, a Codespaces secret) or AWS_PROFILE"
)
REGION_HINT = "set AWS_DEFAULT_REGION, e.g. us-east-1"
# Codes AWS uses for credentials that exist but are wrong, expired or unknown.
BAD_CREDENTIAL_CODES = frozenset(
    {
        "AuthFailure",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
        "RequestExpired",
        "InvalidAccessKeyId",
    }
)
DENIED_CODES = frozenset({"UnauthorizedOperation", "AccessDenied", "AccessDeniedException"})


class Settings(Protocol):
    """Where AWS settings are read (dbtool.targets.project.Config): the environment over the project's .env."""

    def get(self, name: str) -> Any: ...  # a setting with .value and .source, or None

    def value(self, name: str) -> str | None: ...


class AwsError(DbtoolError):
    """AWS refused or could not be reached; the message names what to fix."""


def session(config: Settings) -> Any:
    """A botocore session honouring ``.env`` as well as the environment (botocore reads only the latter)."""
    import botocore.session

    with aws_errors():
        aws = botocore.session.Session(profile=config.value("AWS_PROFILE"))
        region = next((found for name in REGION_VARIABLES if (found := config.value(name))), None)
        if region is not None:
            aws.set_config_variable("region", region)
        key, secret = config.value("AWS_ACCESS_KEY_ID"), config.value("AWS_SECRET_ACCESS_KEY")
        if key and secret:
            aws.set_credentials(key, secret, config.value("AWS_SESSION_TOKEN"))
        return aws


def client(
    config: Settings,
    service: str,
    *,
    region: str | None = None,
    aws_session: Any = None,
    attempts: int | None = None,
    read_timeout: float = 20,
) -> Any:
    """A client for ``service``; an ``AWS_ENDPOINT_URL`` in ``.env`` is honoured like one in the environment."""
    from botocore.config import Config as BotoConfig

    # AWS_ENDPOINT_URL_<SERVICE> (e.g. AWS_ENDPOINT_URL_RDS_DATA) before AWS_ENDPOINT_URL, as botocore orders them.
    endpoint = config.get(f"AWS_ENDPOINT_URL_{service.upper().replace('-', '_')}") or config.get("AWS_ENDPOINT_URL")
    options: dict[str, Any] = {
        # Fail in seconds, not after botocore's default 60 s x 5 attempts, when AWS is unreachable.
        "config": BotoConfig(
            connect_timeout=5,
            read_timeout=read_timeout,
            retries={"total_max_attempts": attempts} if attempts else {"max_attempts": 3, "mode": "standard"},
        ),
    }
    if endpoint is not None and endpoint.source != "environment":
        options["endpoint_url"] = endpoint.value  # botocore reads the environment's own copy itself
    if region is not None:
        options["region_name"] = region
    with aws_errors():
        return (aws_session or session(config)).create_client(service, **options)


def client_in_background(config: Settings, service: str) -> Callable[[], Any]:
    """Start building a client in a thread; the returned function waits for it (re-raising its error).

    Importing botocore and loading a service model takes about 0.2 s (EC2's model is large); a caller
    with other slow work to do first (detecting the public IP over HTTPS) overlaps the two.
    """
    import threading

    outcome: dict[str, Any] = {}

    def build() -> None:
        try:
            outcome["client"] = client(config, service)
        except BaseException as error:  # handed to the caller's thread
            outcome["error"] = error

    worker = threading.Thread(target=build, name=f"dbtool-{service}-client", daemon=True)
    worker.start()

    def result() -> Any:
        worker.join()
        if "error" in outcome:
            raise outcome["error"]
        return outcome["client"]

    return result


@contextlib.contextmanager
def aws_errors(*, actions: Sequence[str] = (), not_found: dict[str, str] | None = None) -> Iterator[None]:
    """Turn botocore's exceptions into an :class:`AwsError` with a hint.

    ``actions`` are the IAM actions the caller needs, printed when AWS says access is denied;
    ``not_found`` maps error codes the caller expects (a missing group, a missing secret) to messages.
    """
    import botocore.exceptions as boto

    try:
        yield
    except boto.ClientError as error:
        raise client_error(error, actions=actions, not_found=not_found or {}) from None
    except (boto.NoCredentialsError, boto.PartialCredentialsError):
        raise AwsError("no AWS credentials found", CREDENTIALS_HINT) from None
    except boto.ProfileNotFound as error:
        raise AwsError(f"AWS profile {error.kwargs.get('profile')!r} not found", "check AWS_PROFILE") from None
    except boto.NoRegionError:
        raise AwsError("no AWS region configured", REGION_HINT) from None
    except (boto.EndpointConnectionError, boto.ConnectTimeoutError, boto.ReadTimeoutError) as error:
        where = error.kwargs.get("endpoint_url", "AWS")
        raise AwsError(f"cannot reach {where}", "check the network, the region and AWS_ENDPOINT_URL") from None


def client_error(error: Any, *, actions: Sequence[str], not_found: dict[str, str]) -> AwsError:
    """One line for an AWS API error: the expected ones by name, the rest with AWS's own code and text."""
    code = error.response.get("Error", {}).get("Code", "")
    message = error.response.get("Error", {}).get("Message", "")
    operation = getattr(error, "operation_name", "the request")
    if code in not_found:
        return AwsError(not_found[code])
    if code in DENIED_CODES:
        needed = ", ".join(actions) if actions else f"the permission for {operation}"
        return AwsError(f"AWS denied {operation} ({code})", f"the IAM user or role needs: {needed}")
    if code in BAD_CREDENTIAL_CODES:
        hint = f"{CREDENTIALS_HINT}; temporary ones may have expired"
        return AwsError(f"AWS rejected the credentials ({code})", hint)
    return AwsError(f"AWS {operation} failed: {code}: {message}")
