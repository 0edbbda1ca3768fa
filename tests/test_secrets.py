"""Channel secrets never reach a log line, whatever apprise itself logs."""

from __future__ import annotations

import base64
import io
import logging
from types import SimpleNamespace

import pytest
from apprise import NotifyLogEntry
from receivers import WebhookReceiver

from notifier import logs
from notifier.channel_privacy import url_secrets
from notifier.channels import ChannelSet, check_url
from notifier.errors import key_prefix
from notifier.send_results import to_send_result
from notifier.settings import ChannelSettings, DeliverySettings


def test_parsing_a_bad_url_logs_no_token(caplog: pytest.LogCaptureFixture) -> None:
    """apprise's own warnings while parsing (which quote the raw token) are kept out of the logs."""
    caplog.set_level(logging.DEBUG)
    assert check_url("slack://sekrit-token-value/abc") == "apprise rejected the URL (slack)"
    assert "sekrit-token-value" not in caplog.text


async def test_failed_send_logs_no_password(
    webhook: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    """apprise's warning about a failed send has the URL's secret parts masked."""
    caplog.set_level(logging.DEBUG)
    url = f"json://bot:pa55word-xyz@127.0.0.1:{webhook.port}/hook-path-secret"
    channels = ChannelSet.build(
        {"desk": ChannelSettings(name="desk", urls=(url,))}, delivery=DeliverySettings(timeout=5)
    )
    webhook.respond(500, body=b"down: pa55word-xyz")  # even a service echoing the secret
    (target,) = channels.targets("desk")
    result = await channels.send(target.key, "title", "body")
    assert not result.ok
    apprise_records = [r for r in caplog.records if r.name.startswith("apprise")]
    assert apprise_records, "apprise logged nothing: the test would prove nothing"
    assert "pa55word-xyz" not in caplog.text
    assert "pa55word-xyz" not in (result.error or "")


async def test_webhook_header_and_payload_secrets_are_masked(
    webhook: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    """A json:// URL's +Authorization header, -apikey parameter and :token payload field never
    reach a log or an error."""
    caplog.set_level(logging.DEBUG)
    url = (
        f"json://127.0.0.1:{webhook.port}/hook"
        "?+Authorization=Bearer%20s3cr3t-TOKEN&-apikey=K3Y99&:token=P4YL0AD"
    )
    channels = ChannelSet.build(
        {"desk": ChannelSettings(name="desk", urls=(url,))}, delivery=DeliverySettings(timeout=5)
    )
    webhook.respond(500, body=b"down: s3cr3t-TOKEN K3Y99 P4YL0AD")
    (target,) = channels.targets("desk")
    result = await channels.send(target.key, "title", "body")
    assert not result.ok
    assert webhook.requests[0].headers["authorization"] == "Bearer s3cr3t-TOKEN"  # it was sent
    assert "%2BAuthorization=***" in target.display
    assert "-apikey=***" in target.display
    assert "%3Atoken=***" in target.display
    assert webhook.requests[0].json["token"] == "P4YL0AD"  # a payload field: it was sent
    # urllib3 logs request lines (a -field is a query parameter): the daemon holds it at WARNING.
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name != "urllib3.connectionpool")
    assert "JSON POST" in logged  # apprise logged the failure: the check below has teeth
    for secret in ("s3cr3t-TOKEN", "K3Y99", "P4YL0AD"):
        assert secret not in target.display
        assert secret not in logged
        assert secret not in (result.error or "")


def test_an_api_key_shows_its_listed_prefix_but_never_half_of_it() -> None:
    """The 16 characters PolySimulator lists, for a real key; for a short one (a typo, a test
    key) at most half, so a log line never carries most of a key."""
    real = "ps_live_" + "0123456789abcdef" * 2
    assert key_prefix(real) == "ps_live_01234567…"
    assert key_prefix("ps_live_0123456789ab") == "ps_live_01…"
    assert key_prefix("x") == "…"
    assert key_prefix("") == "<none>"


async def test_an_echoed_basic_auth_header_is_masked_in_the_error(
    webhook: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    """A service echoing the request's Authorization: Basic header (base64 of user:password)
    in its error: masked in the result, the state file's last_error and the logs."""
    caplog.set_level(logging.DEBUG)
    url = f"ntfy://bot:pa55word-xyz@127.0.0.1:{webhook.port}/fills-topic"
    channels = ChannelSet.build(
        {"desk": ChannelSettings(name="desk", urls=(url,))}, delivery=DeliverySettings(timeout=5)
    )
    basic = base64.b64encode(b"bot:pa55word-xyz")
    echo = b'{"code": 40001, "error": "refused: Authorization: Basic ' + basic + b'"}'
    webhook.respond(400, body=echo)
    (target,) = channels.targets("desk")
    result = await channels.send(target.key, "title", "body")
    assert not result.ok
    assert webhook.requests[0].headers["authorization"] == "Basic " + basic.decode()
    assert "refused: Authorization: Basic ***" in (result.error or ""), result.error
    assert basic.decode() not in caplog.text


async def test_a_library_line_quoting_a_channel_url_keeps_its_secrets_out(
    webhook: WebhookReceiver,
) -> None:
    """urllib3 warns with the whole request URL when a response's headers do not parse: held
    below its floor, and any line that still quotes a secret part has it masked."""
    out = io.StringIO()
    logs.configure(level=logging.DEBUG, fmt="json", stream=out)
    url = f"json://127.0.0.1:{webhook.port}/webhook/n8nSECRETpath123"
    channels = ChannelSet.build(
        {"desk": ChannelSettings(name="desk", urls=(url,))}, delivery=DeliverySettings(timeout=5)
    )
    webhook.respond(200, headers={"X-Odd": "1\r\nthis header line has no colon"})
    (target,) = channels.targets("desk")
    await channels.send(target.key, "title", "body")
    assert len(webhook.requests) == 1
    logging.getLogger("urllib3.connection").error("url=http://127.0.0.1/webhook/n8nSECRETpath123")
    lines = out.getvalue().splitlines()
    assert not any("Failed to parse headers" in line for line in lines)  # below the floor
    assert any("webhook/***" in line for line in lines)  # the line is there, masked
    assert not any("n8nSECRETpath123" in line for line in lines)


def test_a_slack_webhook_url_as_slack_gives_it_is_taken_and_kept_secret() -> None:
    """https://hooks.slack.com/services/T/B/X (pasted from Slack) builds the Slack plugin; its
    display shows no token. A plain https:// URL no service claims is refused, saying why."""
    url = "https://hooks.slack.com/services/T0ABCDEF1/B0ABCDEF2/s3cretW3bhookT0ken"
    assert check_url(url) is None
    channels = ChannelSet.build(
        {"desk": ChannelSettings(name="desk", urls=(url,))}, delivery=DeliverySettings()
    )
    (target,) = channels.targets("desk")
    assert target.display.startswith("slack://")
    assert not any(s in target.display for s in ("T0ABCDEF1", "B0ABCDEF2", "s3cretW3bhookT0ken"))
    refused = check_url("https://example.com/hooks/abc")
    assert refused is not None
    assert "json://" in refused
    assert "example.com" not in refused


@pytest.mark.parametrize("url", ["ntfy://my-secret-topic-42", "https://ntfy.sh/my-secret-topic-42"])
def test_an_ntfy_topic_on_ntfy_sh_is_masked(url: str) -> None:
    """On ntfy.sh's own server the topic is the only secret, and apprise's display puts it
    where a host would be: masked there too, and kept out of errors and logs."""
    channels = ChannelSet.build(
        {"phone": ChannelSettings(name="phone", urls=(url,))}, delivery=DeliverySettings()
    )
    (target,) = channels.targets("phone")
    assert target.display.startswith("ntfys://***")
    assert "my-secret-topic-42" not in target.display


def test_words_of_a_service_s_own_url_are_not_hidden_from_log_lines() -> None:
    """A Discord webhook URL as Discord gives it: its token is hidden in every log line, its
    host and path words are not (a channel named `webhooks` stays readable)."""
    out = io.StringIO()
    logs.configure(level=logging.INFO, fmt="text", stream=out)
    url = "https://discord.com/api/webhooks/1234567890/T0kenT0kenT0kenSecret"
    ChannelSet.build(
        {"webhooks": ChannelSettings(name="webhooks", urls=(url,))}, delivery=DeliverySettings()
    )
    logging.getLogger("notifier.test").info(
        "channel webhooks at discord.com: T0kenT0kenT0kenSecret"
    )
    assert out.getvalue().rstrip().endswith("channel webhooks at discord.com: ***")


async def test_a_url_with_nothing_secret_in_it_is_shown_in_log_lines(
    webhook: WebhookReceiver,
) -> None:
    """A URL whose display hides nothing was itself a "secret": log lines said `send to ***`."""
    out = io.StringIO()
    logs.configure(level=logging.DEBUG, fmt="text", stream=out)
    shown = f"json://127.0.0.1:{webhook.port}/desk"
    hidden = f"json://bot:pw@127.0.0.1:{webhook.port}/desk"
    channels = ChannelSet.build(
        {
            "a": ChannelSettings(name="a", urls=(shown,)),
            "b": ChannelSettings(name="b", urls=(hidden,)),
        },
        delivery=DeliverySettings(timeout=5),
    )
    for name in ("a", "b"):
        (target,) = channels.targets(name)
        assert (await channels.send(target.key, "title", "body")).ok
    lines = [line for line in out.getvalue().splitlines() if "send to" in line]
    assert len(lines) == 2
    assert f"send to {shown}?method=POST" in lines[0]
    assert "bot:****@127.0.0.1" in lines[1]
    assert not any(":pw@" in line for line in lines)


def test_a_send_s_cause_cut_short_shows_no_part_of_a_token() -> None:
    """A send's cause longer than its limit is scrubbed before it is cut: requests quotes the
    URL's path, and a token cut in two no longer matched, so its first part was shown."""
    token = "A" * 30 + "B" * 38
    url = f"https://discord.com/api/webhooks/123456789012345678/{token}"
    logged = (
        "Socket Exception: HTTPSConnectionPool(host='discord.com', port=443): Max retries "
        f"exceeded with url: /api/webhooks/123456789012345678/{token}?wait=true (Caused by "
        "SSLError(SSLCertVerificationError(1, '[SSL: CERTIFICATE_VERIFY_FAILED] certificate "
        "verify failed')))"
    )
    service = SimpleNamespace(
        name="Discord",
        status=SimpleNamespace(name="FAILURE"),
        logs=lambda: [NotifyLogEntry("DEBUG", logged)],
    )
    result = _FailedResult([service])
    error = to_send_result(result, url_secrets(url, "discord://1234...")).error or ""  # type: ignore[arg-type]  # a failed AppriseResult's shape
    assert "Max retries exceeded" in error
    assert "AAAAAA" not in error


class _FailedResult(list[object]):
    """What to_send_result reads of a failed AppriseResult: falsy, its services in order."""

    def __bool__(self) -> bool:
        return False
