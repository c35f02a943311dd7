"""rds-update-sg-rule against the classic AWS CLI one-liner, side by side on the same moto server.

Starts moto as an HTTP server on 127.0.0.1 (a separate process, so it does not share this one's
CPU accounting), creates a security group with one rule, then times, as processes from start to exit:

  aws modify        the old script's call: aws ec2 modify-security-group-rules on a hand-copied
                    rule id, with a new address each run
  dbtool modify     ./bin/rds-update-sg-rule --ip with a new address each run (finds the owner's
                    rule, then modifies it in place: two API calls)
  dbtool unchanged  ./bin/rds-update-sg-rule --ip with the address already in place (one call)
  dbtool --help     start-up alone, which never imports boto3
  with detection    the whole workspace-start step, address included: the old script's
                    `curl ifconfig.me` then `aws ec2 modify-security-group-rules`, against
                    ./bin/rds-update-sg-rule detecting the address itself; the "what is my IP"
                    service is a local HTTP server that answers after DELAY ms (--delay-ms,
                    default 150, a typical round trip to such a service), so nothing leaves loopback
Needs the AWS CLI: `aws` on PATH or --aws PATH (e.g. python -m venv /tmp/awscli && /tmp/awscli/bin/pip
install awscli).

Usage: .venv/bin/python bench/sg_rule.py [--repeat 15] [--delay-ms 150] [--aws PATH]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3

from dbtool.local.cluster import free_port

REPO = Path(__file__).resolve().parent.parent
SCRIPT = str(REPO / "bin" / "rds-update-sg-rule")
DBTOOL = str(REPO / ".venv" / "bin" / "dbtool")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--delay-ms", type=int, default=150, help="the IP service's answer time")
    parser.add_argument("--aws", default=shutil.which("aws"), help="the AWS CLI executable")
    args = parser.parse_args()
    if not args.aws:
        sys.exit("error: the AWS CLI is not installed (pip install awscli into any venv, then pass --aws PATH)")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        endpoint = f"http://127.0.0.1:{port}"
        _wait_for(endpoint)
        env = _environment(endpoint)
        ec2 = boto3.client(
            "ec2", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
        )
        group = ec2.create_security_group(GroupName="rds", Description="bench")["GroupId"]
        env["DB_SG_ID"] = group
        subprocess.run([SCRIPT, "--ip", "52.0.0.1", "--quiet"], env=env, check=True)  # the owner's rule, created
        rule = ec2.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [group]}])
        rule_id = next(r["SecurityGroupRuleId"] for r in rule["SecurityGroupRules"] if not r["IsEgress"])
        addresses = iter(f"52.0.{n // 250}.{n % 250 + 1}" for n in range(1, 100_000))
        service = _ip_service(addresses, args.delay_ms / 1000)
        env["DBTOOL_IP_SERVICES"] = service

        def aws_modify() -> list[str]:
            spec = (
                f"SecurityGroupRuleId={rule_id},SecurityGroupRule={{IpProtocol=tcp,FromPort=5432,ToPort=5432,"
                f"CidrIpv4={next(addresses)}/32,Description=bench}}"
            )
            return [args.aws, "ec2", "modify-security-group-rules", "--group-id", group, "--security-group-rules", spec]

        rows = [
            ("aws ec2 modify-security-group-rules", aws_modify),
            ("rds-update-sg-rule (new IP: modify)", lambda: [SCRIPT, "--ip", next(addresses)]),
            ("rds-update-sg-rule (same IP: no change)", lambda: [SCRIPT, "--ip", "52.9.9.9"]),
            ("dbtool --help (start-up only)", lambda: [DBTOOL, "--help"]),
            (
                "curl + aws ec2 modify-security-group-rules",
                lambda: ["sh", "-c", OLD_SCRIPT, "sh", args.aws, service, group, rule_id],
            ),
            ("rds-update-sg-rule, detecting the IP", lambda: [SCRIPT]),
        ]
        results = {name: _time(command, env, args.repeat, "modify)" in name) for name, command in rows}
    finally:
        server.terminate()
        server.wait()
    baseline = results[rows[0][0]]
    detected = results[rows[4][0]]
    print(f"median of {args.repeat} runs, each a process from start to exit, moto on 127.0.0.1")
    print(f"{'command':<44} {'seconds':>8} {'speed vs aws CLI':>17}")
    for name, seconds in results.items():
        base = detected if "detect" in name or "curl" in name else baseline
        print(f"{name:<44} {seconds:8.3f} {base / seconds:16.2f}x")


# The old bin/rds-update-sg-rule, with ifconfig.me replaced by the local service ($2).
OLD_SCRIPT = """
GITPOD_IP=$(curl -s "$2")
"$1" ec2 modify-security-group-rules --group-id "$3" --security-group-rules \
  "SecurityGroupRuleId=$4,SecurityGroupRule={IpProtocol=tcp,FromPort=5432,ToPort=5432,CidrIpv4=$GITPOD_IP/32,Description=GITPOD}"
"""


def _ip_service(addresses: Iterator[str], delay: float) -> str:
    """A "what is my IP" service on loopback that answers a new address each time, after ``delay`` seconds."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            time.sleep(delay)
            body = f"{next(addresses)}\n".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/"


def _time(command: object, env: dict[str, str], repeat: int, restore: bool) -> float:
    """Median wall time of ``command()``'s argv, run ``repeat`` times (after one untimed warm-up)."""
    timings = []
    for attempt in range(repeat + 1):
        argv = command()  # type: ignore[operator]
        started = time.perf_counter()
        subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
        if attempt:
            timings.append(time.perf_counter() - started)
    if restore:  # leave the rule at the address the "same IP" row expects
        subprocess.run([SCRIPT, "--ip", "52.9.9.9", "--quiet"], env=env, check=True)
    return statistics.median(timings)


def _environment(endpoint: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "DB_SG_", "GITPOD_"))}
    return env | {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "AWS_PAGER": "",
        "GITHUB_USER": "bench",
    }


def _wait_for(endpoint: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/").close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit("error: moto server did not start")


if __name__ == "__main__":
    main()
