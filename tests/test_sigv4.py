"""
The fast SigV4 signer signs exactly as botocore does, for every Invoke the
gateway can send: property tests against L{twisted_lambdagw.invokers.aws.invoker.sign}.
"""

from __future__ import annotations

from typing import Any

from botocore.credentials import ReadOnlyCredentials
from hypothesis import example, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from twisted_lambdagw.invokers.aws import invoker as aws
from twisted_lambdagw.invokers.aws import sigv4

derandomized = settings(derandomize=True, database=None, deadline=None, max_examples=300)

ASCII = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
# Runs of spaces inside and around a value: SigV4 folds and trims them.
spacey = st.lists(st.sampled_from([" ", "  ", "   ", "a", "Zb9", "=", "/+"]), max_size=8).map(
    "".join
)
NAME = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"

regions = st.sampled_from(
    ["us-east-1", "us-west-2", "eu-central-1", "ap-southeast-3", "cn-north-1", "us-gov-west-1"]
) | st.text("abcdefghijklmnopqrstuvwxyzXYZ0123456789-", min_size=1, max_size=20)
plain_names = st.text(NAME, min_size=1, max_size=64)
arns = st.builds(
    "arn:{}:lambda:{}:{}:function:{}{}".format,
    st.sampled_from(["aws", "aws-cn", "aws-us-gov"]),
    regions,
    st.text("0123456789", min_size=12, max_size=12),
    plain_names,
    st.sampled_from(["", ":$LATEST", ":prod", ":7"]),
)
partial_arns = st.builds(
    "{}:function:{}".format, st.text("0123456789", min_size=12, max_size=12), plain_names
)
functions = plain_names | arns | partial_arns | st.text(min_size=1, max_size=30)
qualifiers = st.none() | st.sampled_from(["$LATEST", "prod", "1", "v2-blue"]) | st.text(max_size=20)
hosts = st.sampled_from(
    [
        "https://lambda.us-east-1.amazonaws.com",
        "https://lambda-fips.us-gov-west-1.amazonaws.com",
        "https://lambda.us-west-2.api.aws",
        "https://lambda.cn-north-1.amazonaws.com.cn",
        "https://Lambda.Example.COM:443",
        "https://lambda.example.com:8443/",
        "http://127.0.0.1:3001",
        "http://127.0.0.1:80",
        "http://localhost:9000",
        "http://[::1]:3002",
        "http://[::1]",
        "http://10.0.0.7",
    ]
) | st.builds("http://127.0.0.1:{}".format, st.integers(1, 65535))
paths = st.sampled_from([aws.INVOKE_PATH, aws.STREAM_PATH])
small_bodies = st.binary(max_size=2048)
large_bodies = st.builds(
    lambda size, byte: bytes([byte]) * size,
    st.integers(64 * 1024, 6 * 1024 * 1024),
    st.integers(0, 255),
)
bodies = small_bodies | large_bodies | st.sampled_from([b"", b"{}", '{"é": "ü"}'.encode()])
secrets = st.text(max_size=60) | st.just("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
access_keys = st.text(ASCII, min_size=1, max_size=30) | st.just("AKIDEXAMPLE")
tokens = st.none() | st.just("") | st.text(ASCII, max_size=400)
invocation_types = st.sampled_from(["RequestResponse", "Event", "DryRun"]) | st.text(
    ASCII, max_size=20
)
log_types = st.none() | st.just("Tail") | st.text(ASCII, max_size=10)
times = (
    st.floats(min_value=946684800, max_value=4102444799.999, allow_nan=False)
    | st.integers(946684800, 4102444799)
    | st.builds(
        lambda s, f: s + f,
        st.integers(946684800, 4102444798),
        st.sampled_from(
            [0.0, 0.4999995, 0.4999996, 0.5, 0.9999994, 0.9999995, 0.9999996, 0.99999999]
        ),
    )
)


def reference(*args: Any) -> dict[str, str]:
    return aws.sign(*args)


class FastSignerTests(SynchronousTestCase):
    """
    L{sigv4.sign} gives botocore's headers, in botocore's order, byte for byte.
    """

    def same(
        self,
        credentials: ReadOnlyCredentials,
        region: str,
        url: str,
        body: bytes,
        headers: dict[str, str],
        when: float,
    ) -> None:
        expected = reference(credentials, region, url, body, dict(headers), when)
        fast = sigv4.sign(credentials, region, url, body, dict(headers), when)
        self.assertIsNotNone(fast, "the gateway's own request shape took the slow path")
        assert fast is not None
        self.assertEqual(list(fast.items()), list(expected.items()))

    @derandomized
    @given(
        function=functions,
        qualifier=qualifiers,
        endpoint=hosts,
        path=paths,
        body=bodies,
        access_key=access_keys,
        secret=secrets,
        token=tokens,
        region=regions,
        invocation_type=invocation_types,
        log_type=log_types,
        when=times,
    )
    @example(
        function="arn:aws:lambda:us-west-2:123456789012:function:my-function",
        qualifier="$LATEST",
        endpoint="https://lambda.us-west-2.amazonaws.com",
        path=aws.INVOKE_PATH,
        body=b"",
        access_key="AKIDEXAMPLE",
        secret="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        token="FQoGZXIvYXdzEXAMPLETOKEN",
        region="us-west-2",
        invocation_type="RequestResponse",
        log_type="Tail",
        when=1700000000.9999996,
    )
    def test_invoke_requests(
        self,
        function: str,
        qualifier: str | None,
        endpoint: str,
        path: str,
        body: bytes,
        access_key: str,
        secret: str,
        token: str | None,
        region: str,
        invocation_type: str,
        log_type: str | None,
        when: float,
    ) -> None:
        """
        Every Invoke and InvokeWithResponseStream the gateway makes is signed as botocore would.
        """
        url = aws.invoke_url(endpoint, function, qualifier, path)
        headers = {"X-Amz-Invocation-Type": invocation_type}
        if log_type is not None:
            headers["X-Amz-Log-Type"] = log_type
        credentials = ReadOnlyCredentials(access_key, secret, token)
        self.same(credentials, region, url, body, headers, when)

    @derandomized
    @given(token=spacey, invocation_type=spacey, log_type=spacey, when=times)
    @example(token=" a  b ", invocation_type="  Event", log_type="Tail  ", when=1700000000.0)
    def test_spaces(self, token: str, invocation_type: str, log_type: str, when: float) -> None:
        """
        Runs of spaces in tokens and header values are folded and trimmed as botocore does.
        """
        credentials = ReadOnlyCredentials("AKIDEXAMPLE", "secret", token)
        url = aws.invoke_url("https://lambda.us-east-1.amazonaws.com", "f", "prod")
        headers = {"X-Amz-Invocation-Type": invocation_type, "X-Amz-Log-Type": log_type}
        self.same(credentials, "us-east-1", url, b"{}", headers, when)

    @derandomized
    @given(
        headers=st.dictionaries(
            st.text(
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~!#$%&'*+^`|",
                min_size=1,
                max_size=20,
            ),
            st.text(ASCII, max_size=40) | spacey,
            max_size=6,
        ),
        when=times,
    )
    def test_other_headers(self, headers: dict[str, str], when: float) -> None:
        """
        Any other printable headers, spaces inside and around values included,
        are signed as botocore signs them, or left to botocore.
        """
        credentials = ReadOnlyCredentials("AKIDEXAMPLE", "secret", "token")
        url = aws.invoke_url("https://lambda.us-east-1.amazonaws.com", "f", None)
        expected = reference(credentials, "us-east-1", url, b"{}", dict(headers), when)
        fast = sigv4.sign(credentials, "us-east-1", url, b"{}", dict(headers), when)
        if fast is not None:
            self.assertEqual(list(fast.items()), list(expected.items()))
        else:
            lower = [name.lower() for name in headers]
            self.assertTrue(
                len(set(lower)) < len(lower)
                or set(lower) & (sigv4._OWN_HEADERS | sigv4._NOT_SIGNED)
            )

    def test_outside_the_shape(self) -> None:
        """
        Requests outside the shape are refused, for botocore to sign.
        """
        credentials = ReadOnlyCredentials("AKID", "secret", None)
        url = "https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/f/invocations"
        when = 1700000000.0
        for headers, creds, moment in [
            ({"Authorization": "x"}, credentials, when),
            ({"X-Amz-Date": "x"}, credentials, when),
            ({"Host": "elsewhere"}, credentials, when),
            ({"A": "1", "a": "2"}, credentials, when),
            ({"A": "caf\u00e9"}, credentials, when),
            ({"A": "x\r\ny"}, credentials, when),
            ({}, ReadOnlyCredentials("AKID", "secret", "t\u00f6ken"), when),
            ({}, credentials, 0.0),
            ({}, credentials, float("nan")),
        ]:
            self.assertIsNone(sigv4.sign(creds, "us-east-1", url, b"", headers, moment))

    def test_signing_key_cached(self) -> None:
        """
        The derived key is made once per secret, day and region.
        """
        sigv4._signing_key.cache_clear()
        credentials = ReadOnlyCredentials("AKID", "secret", None)
        url = "https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/f/invocations"
        for second in range(3):
            sigv4.sign(credentials, "us-east-1", url, b"", {}, 1700000000.0 + second)
        sigv4.sign(credentials, "us-east-1", url, b"", {}, 1700000000.0 + 86400)
        info = sigv4._signing_key.cache_info()
        self.assertEqual((info.misses, info.hits), (2, 2))
