"""
Start moto's Lambda API on 127.0.0.1 and create the example functions in it.

moto (``pip install 'moto[server]'``) answers AWS API calls locally.  This
script starts ``python -m moto.server`` on 127.0.0.1, creates a role and the
functions ``hello`` and ``echo`` from ``examples/functions/``, prints one
``ready`` line, and runs until Ctrl-C or SIGTERM, which stop moto too.

Two ways for moto to answer an Invoke:

- by default (no Docker needed), moto's Docker-free Lambda backend: every
  invoke succeeds and returns the event the gateway sent (the function's code
  is stored, not run), so what comes back shows exactly what a function
  would receive;
- with ``--docker``, moto runs each function's code in AWS's Lambda image
  (it needs a running Docker daemon and pulls the image on first use), and
  ``/lambda/hello`` answers with hello.py's greeting.

Usage: python examples/aws-local/start-moto.py [--port 5055] [--docker]
"""

from __future__ import annotations

import argparse
import io
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from types import FrameType
from typing import Any

import botocore.session

FUNCTIONS = Path(__file__).resolve().parent.parent / "functions"
REGION = "us-east-1"
TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def wait_until_answering(url: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"start-moto: moto exited with status {process.returncode}")
        try:
            with OPENER.open(url + "/moto-api/", timeout=1) as response:
                response.read()
            return
        except (urllib.error.URLError, OSError):
            time.sleep(0.05)
    raise SystemExit(f"start-moto: moto did not answer on {url} within {timeout:g} s")


def use_docker(url: str, enabled: bool) -> None:
    """Choose moto's Lambda backend: Docker containers, or the Docker-free one."""
    request = urllib.request.Request(  # noqa: S310 (an http:// URL made above)
        url + "/moto-api/config",
        data=json.dumps({"lambda": {"use_docker": enabled}}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with OPENER.open(request, timeout=5) as response:
        response.read()


def client(service: str, url: str) -> Any:
    # Placeholder keys: moto checks no signature unless told to.
    session = botocore.session.Session()
    return session.create_client(
        service,
        region_name=REGION,
        endpoint_url=url,
        aws_access_key_id="AKIAMOTOEXAMPLE00000",
        aws_secret_access_key="moto-accepts-any-secret-key",  # noqa: S106 (not a secret)
    )


def package(name: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.write(FUNCTIONS / f"{name}.py", f"{name}.py")
    return buffer.getvalue()


def create_functions(url: str, names: list[str]) -> None:
    iam, lam = client("iam", url), client("lambda", url)
    role = iam.create_role(RoleName="lambdagw-example", AssumeRolePolicyDocument=json.dumps(TRUST))
    for name in names:
        lam.create_function(
            FunctionName=name,
            Runtime="python3.12",
            Role=role["Role"]["Arn"],
            Handler=f"{name}.handler",
            Code={"ZipFile": package(name)},
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=5055, help="moto's port (default 5055)")
    parser.add_argument("--docker", action="store_true", help="run the functions in Docker")
    args = parser.parse_args()
    url = f"http://127.0.0.1:{args.port}"
    moto = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(args.port)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def stop(number: int, frame: FrameType | None) -> None:
        moto.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        wait_until_answering(url, moto, timeout=30)
        use_docker(url, args.docker)
        create_functions(url, ["hello", "echo"])
        mode = "run in Docker" if args.docker else "Docker-free: each invoke returns its event"
        print(f"ready: moto's Lambda API on {url}, functions hello and echo ({mode})", flush=True)
        moto.wait()
    finally:
        if moto.poll() is None:
            moto.terminate()
        moto.wait(timeout=10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
