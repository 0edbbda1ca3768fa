"""Channels against real peers on loopback: json, ntfy, SMTP with AUTH, Slack and Telegram via
a TLS-intercepting proxy. No mocked apprise."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import html
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import apprise
import pytest
import requests
from conftest import LoopbackOnly, OutsideNetworkError
from faults import until
from receivers import (
    SLACK_HOST,
    TELEGRAM_HOST,
    SmtpServer,
    TlsProxy,
    WebhookReceiver,
    telegram_html_to_text,
)

from notifier import send_attempt
from notifier.channels import ChannelSet, Target, check_url, diagnosing
from notifier.errors import ConfigError
from notifier.events import MessageLimit
from notifier.late_deliveries import LateDeliveries
from notifier.send_results import RATE_LIMIT_PAUSE, rate_limit_pause, timeout_note, waited_out
from notifier.settings import ChannelSettings, DeliverySettings

TITLE = "Will <b>&*_ win?"
BODY = "BUY 10 YES @ 0.45 <i> & *x* _y_"
SLACK_URL = "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7"
TG_TOKEN = "123456789:ABCdefGHIjklMNOpqrSTU"
TG_URL = f"tgram://{TG_TOKEN}/12345"


def channels(
    spec: dict[str, tuple[str, ...]], delivery: DeliverySettings | None = None
) -> ChannelSet:
    settings = {name: ChannelSettings(name=name, urls=urls) for name, urls in spec.items()}
    return ChannelSet.build(settings, delivery=delivery or DeliverySettings(timeout=5))


def only(cs: ChannelSet, channel: str = "c") -> Target:
    (target,) = cs.targets(channel)
    return target


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- payloads, per service -------------------------------------------------------------------


async def test_json_payload_arrives_intact(webhook: WebhookReceiver) -> None:
    """json:// POSTs apprise's JSON document with title and body untouched in text mode."""
    cs = channels({"c": (webhook.json_url,)})
    result = await cs.send(only(cs).key, TITLE, BODY)
    assert result.ok
    (request,) = webhook.requests
    assert (request.method, request.path) == ("POST", "/")
    assert request.json == {
        "version": "1.0",
        "title": TITLE,
        "message": BODY,
        "attachments": [],
        "type": "info",
    }


async def test_ntfy_to_loopback_server(webhook: WebhookReceiver) -> None:
    """ntfy://host:port/topic POSTs JSON (topic, title, message) to the server root."""
    cs = channels({"c": (webhook.ntfy_url("fills"),)})
    assert (await cs.send(only(cs).key, TITLE, BODY)).ok
    (request,) = webhook.requests
    assert request.path == "/"
    assert request.json == {"topic": "fills", "title": TITLE, "message": BODY}
    assert "x-markdown" not in request.headers


async def test_mailto_authenticates_and_delivers(smtp_server: SmtpServer) -> None:
    """mailto:// logs in to the SMTP server and delivers subject and plain body intact."""
    cs = channels({"mail": (smtp_server.url(),)})
    assert (await cs.send(only(cs, "mail").key, TITLE, BODY)).ok
    (mail,) = await smtp_server.wait_for(1)
    assert mail.login == "alerts"
    assert mail.rcpt_tos == ("trader@example.com",)
    assert mail.message["Subject"] == TITLE
    assert mail.text().rstrip("\r\n") == BODY


async def test_a_mail_server_slower_than_delivery_timeout_still_delivers_once(
    smtp_server: SmtpServer,
) -> None:
    """A mail server that scans a message before it answers: apprise hands smtplib one
    timeout for every step, so with delivery.timeout there the answer was cut off, the send
    failed and its retry mailed it again. It gets twice the timeout, as an HTTP answer does."""
    smtp_server.answer_delay = 1.5
    cs = channels({"c": (smtp_server.url(),)}, DeliverySettings(timeout=1.0))
    result = await asyncio.wait_for(cs.send(only(cs).key, TITLE, BODY), timeout=30)
    assert (result.ok, result.error) == (True, None)
    assert len(smtp_server.mails) == 1


async def test_mailto_wrong_password_fails_without_leaking_it(smtp_server: SmtpServer) -> None:
    """A refused SMTP login is a failed send whose error never shows the password."""
    cs = channels({"mail": (smtp_server.url(password="wrong-Pa55word"),)})
    target = only(cs, "mail")
    result = await cs.send(target.key, TITLE, BODY)
    assert not result.ok
    assert result.error is not None
    assert "wrong-Pa55word" not in result.error
    assert "wrong-Pa55word" not in target.display
    assert smtp_server.failed_logins >= 1  # smtplib tries each advertised mechanism
    assert smtp_server.mails == []


async def test_slack_webhook_payload_through_proxy(tls_proxy: TlsProxy) -> None:
    """Slack gets a plain (mrkdwn off) attachment whose escaped text displays the title intact."""
    cs = channels({"slack": (SLACK_URL,)})
    assert (await cs.send(only(cs, "slack").key, TITLE, BODY)).ok
    (request,) = tls_proxy.requests
    assert request.host == SLACK_HOST
    assert request.path == "/services/T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7"
    payload = request.json
    assert payload["mrkdwn"] is False
    (attachment,) = payload["attachments"]
    assert attachment["title"] == "Will &lt;b&gt;&amp;*_ win?"
    assert attachment["text"] == "BUY 10 YES @ 0.45 &lt;i&gt; &amp; *x* _y_"
    # Slack shows &lt; &gt; &amp; as the characters themselves.
    assert html.unescape(attachment["title"]) == TITLE
    assert html.unescape(attachment["text"]) == BODY


async def test_telegram_send_message_through_proxy(tls_proxy: TlsProxy) -> None:
    """Telegram gets parse_mode=HTML text that it accepts and displays with the title intact."""
    cs = channels({"tg": (TG_URL,)})
    assert (await cs.send(only(cs, "tg").key, TITLE, BODY)).ok
    (request,) = tls_proxy.requests
    assert request.host == TELEGRAM_HOST
    assert request.path == f"/bot{TG_TOKEN}/sendMessage"
    payload = request.json
    assert payload["chat_id"] == 12345
    assert payload["parse_mode"] == "HTML"
    assert payload["text"] == (
        "<b>Will &lt;b&gt;&amp;*_ win?</b>\r\nBUY 10 YES @ 0.45 &lt;i&gt; &amp; *x* _y_"
    )
    assert telegram_html_to_text(payload["text"]) == f"{TITLE}\r\n{BODY}"


HTML = DeliverySettings(timeout=5, body_format="html")
PLAIN_TITLE = "BUY Yes on S&P 500 < 5000?"


async def test_html_mode_titles_are_plain_where_the_service_shows_them_apart(
    webhook: WebhookReceiver, smtp_server: SmtpServer, tls_proxy: TlsProxy
) -> None:
    """With body_format html, values in a rendered title are escaped ("S&amp;P"); apprise
    passes a title the service shows apart (a subject, a notification title) on as is, so
    it goes out as text; merged into Telegram's HTML body it stays escaped."""
    title, body = html.escape(PLAIN_TITLE), "<b>BUY</b> 150 @ 0.42 on S&amp;P"
    cs = channels(
        {"json": (webhook.json_url,), "mail": (smtp_server.url(),), "tg": (TG_URL,)}, HTML
    )
    for name in ("json", "mail", "tg"):
        assert (await cs.send(only(cs, name).key, title, body)).ok
    assert webhook.requests[0].json["title"] == PLAIN_TITLE
    assert webhook.requests[0].json["message"] == body
    (mail,) = await smtp_server.wait_for(1)
    assert mail.message["Subject"] == PLAIN_TITLE
    (request,) = tls_proxy.requests
    assert request.json["text"] == f"<b>{title}</b>\r\n{body}"
    assert telegram_html_to_text(request.json["text"]) == f"{PLAIN_TITLE}\r\nBUY 150 @ 0.42 on S&P"


async def test_each_channel_sends_in_its_own_format(smtp_server: SmtpServer) -> None:
    """channels.NAME.body_format: apprise is told each channel's format, so one mail channel
    sends an HTML mail (its subject plain text) while another, left to delivery's text, sends
    a plain one with the venue's "<" as written."""
    settings = {
        "rich": ChannelSettings(
            "rich", (smtp_server.url(to="rich@example.com"),), body_format="html"
        ),
        "plain": ChannelSettings("plain", (smtp_server.url(to="plain@example.com"),)),
    }
    cs = ChannelSet.build(settings, delivery=DeliverySettings(timeout=5))
    assert (cs.body_format("rich"), cs.body_format("plain")) == ("html", "text")
    escaped = html.escape(PLAIN_TITLE)
    rich_body = "<b>BUY</b> 150 @ 0.42 on S&amp;P 500 &lt; 5000?"
    assert (await cs.send(only(cs, "rich").key, escaped, rich_body)).ok
    assert (await cs.send(only(cs, "plain").key, PLAIN_TITLE, "BUY 150 on S&P 500 < 5000?")).ok
    rich, plain = await smtp_server.wait_for(2)
    assert rich.message["Subject"] == PLAIN_TITLE
    html_part = rich.message.get_body(preferencelist=("html",))
    assert html_part is not None
    assert rich_body in html_part.get_content()
    assert plain.message["Subject"] == PLAIN_TITLE
    assert plain.message.get_body(preferencelist=("html",)) is None
    assert plain.text().rstrip("\r\n") == "BUY 150 on S&P 500 < 5000?"


async def test_fake_telegram_refuses_html_it_cannot_parse(tls_proxy: TlsProxy) -> None:
    """The fake Bot API refuses unparseable HTML (400 "can't parse entities") as the real one."""
    url = f"https://{TELEGRAM_HOST}/bot{TG_TOKEN}/sendMessage"
    for text in ("price < 0.45 & rising", "<x>bold</x>", "<b>open"):
        payload = {"chat_id": 1, "parse_mode": "HTML", "text": text}
        response = await asyncio.to_thread(requests.post, url, json=payload, timeout=5)
        assert response.status_code == 400
        assert response.json()["description"].startswith("Bad Request: can't parse entities")
    ok = {"chat_id": 1, "parse_mode": "HTML", "text": "<b>price</b> &lt; 0.45 &amp; rising"}
    response = await asyncio.to_thread(requests.post, url, json=ok, timeout=5)
    assert response.json()["result"]["text"] == "price < 0.45 & rising"


async def test_telegram_refusal_is_a_failure_without_the_token(tls_proxy: TlsProxy) -> None:
    """A Bot API 400 becomes SendResult(ok=False) carrying its description, never the token."""
    refusal = b'{"ok":false,"error_code":400,"description":"Bad Request: can\'t parse entities"}'
    tls_proxy.respond(400, body=refusal)
    cs = channels({"tg": (TG_URL,)})
    result = await cs.send(only(cs, "tg").key, TITLE, BODY)
    assert not result.ok
    assert result.error is not None
    assert "can't parse entities" in result.error
    assert "ABCdefGHIjklMNOpqrSTU" not in result.error
    assert "123456789" not in result.error


async def test_proxy_answers_itself_and_refuses_other_hosts(tls_proxy: TlsProxy) -> None:
    """Only Slack and Telegram are intercepted; any other host is refused, nothing leaves."""
    cs = channels({"c": (SLACK_URL, "discord://1234567890/abcdefghijklmnop")})
    slack, discord = cs.targets("c")
    assert (await cs.send(slack.key, TITLE, BODY)).ok
    assert not (await cs.send(discord.key, TITLE, BODY)).ok
    assert tls_proxy.connects == ["hooks.slack.com:443", "discord.com:443"]
    assert [r.host for r in tls_proxy.requests] == [SLACK_HOST]


async def test_concurrent_sends_to_one_target_leave_in_call_order(
    webhook: WebhookReceiver,
) -> None:
    """Sends to the same target are serialized: they arrive in the order they were made."""
    cs = channels({"c": (webhook.json_url,)})
    key = only(cs).key
    results = await asyncio.gather(*(cs.send(key, TITLE, f"fill {n}") for n in range(5)))
    assert all(r.ok for r in results)
    arrived = await webhook.wait_for(5)
    assert [r.json["message"] for r in arrived] == [f"fill {n}" for n in range(5)]


# --- failures, one URL at a time -------------------------------------------------------------


async def test_each_url_of_a_channel_succeeds_or_fails_alone() -> None:
    """Two URLs of one channel: the failing one fails, the other delivers, each exactly once."""
    bad, good = WebhookReceiver(), WebhookReceiver()
    await bad.start()
    await good.start()
    try:
        bad.respond(500)
        cs = channels({"c": (bad.json_url, good.ntfy_url("fills"))})
        first, second = cs.targets("c")
        results = await asyncio.gather(
            cs.send(first.key, TITLE, BODY), cs.send(second.key, TITLE, BODY)
        )
        assert [r.ok for r in results] == [False, True]
        assert len(bad.requests) == 1
        assert len(good.requests) == 1
        assert good.requests[0].json["message"] == BODY
    finally:
        await bad.close()
        await good.close()


async def test_http_500_is_a_failure_without_the_password(webhook: WebhookReceiver) -> None:
    """A 500 becomes SendResult(ok=False) naming the status, never the URL's password."""
    url = f"json://hookuser:Sup3rSecretPw@127.0.0.1:{webhook.port}/"
    webhook.respond(500)
    cs = channels({"c": (url,)})
    result = await cs.send(only(cs).key, TITLE, BODY)
    assert not result.ok
    assert result.error is not None
    assert "500" in result.error
    assert "Sup3rSecretPw" not in result.error
    assert result.retry_after is None
    assert webhook.requests[0].headers["authorization"].startswith("Basic ")


async def test_http_429_pauses_the_channel(webhook: WebhookReceiver) -> None:
    """A 429 is a failure that pauses the channel: apprise hides Retry-After, so 30 s."""
    webhook.respond(429, retry_after=7)
    cs = channels({"c": (webhook.ntfy_url(),)})
    result = await cs.send(only(cs).key, TITLE, BODY)
    assert not result.ok
    assert result.retry_after == RATE_LIMIT_PAUSE == 30.0
    assert len(webhook.requests) == 1


@pytest.mark.parametrize(
    ("error", "pause"),
    [
        ("JSON: failure: Failed to send JSON POST notification: error=429.", 30.0),
        ("Telegram: failure: Too Many Requests: retry after 35 - error=429.", 35.0),
        ("Discord: failure: error=429, retry_after: 1.5", 1.5),  # not cut to 1 s
        ("Slack: failure: Too Many Requests", 30.0),
        ("X: failure: retry_after: 99999999", None),  # no 429: not a rate limit
        ("Telegram: failure: retry after 86400 - error=429", 3600.0),
        ("JSON: failure: error=500.", None),
        ("ntfy: failure: Failed to send ntfy notification to topic 'desk-429': error=500.", None),
        ("Discord: failure: HTTP 429", 30.0),
        ("ntfy: failure: error=4290.", None),
    ],
)
def test_a_rate_limit_is_read_from_apprise_s_words(error: str, pause: float | None) -> None:
    """A 429 (or its words) pauses; a wait the service states is taken, up to an hour."""
    assert rate_limit_pause(error) == pause


async def test_recovers_after_outage(webhook: WebhookReceiver) -> None:
    """The same built object delivers again once the service is back."""
    webhook.respond(503, times=2)
    cs = channels({"c": (webhook.json_url,)})
    key = only(cs).key
    outcomes = [(await cs.send(key, TITLE, f"attempt {n}")).ok for n in range(3)]
    assert outcomes == [False, False, True]
    assert [r.json["message"] for r in webhook.requests] == ["attempt 0", "attempt 1", "attempt 2"]


async def test_closed_port_is_a_failure() -> None:
    """Nothing listening is a failed send (connection refused), not an exception."""
    cs = channels({"c": (f"json://127.0.0.1:{closed_port()}/",)})
    result = await cs.send(only(cs).key, TITLE, BODY)
    assert not result.ok
    assert result.error
    assert "no answer within" not in result.error  # refused at once (delivery.timeout: 30s)


async def test_hanging_server_is_bounded_by_delivery_timeout(webhook: WebhookReceiver) -> None:
    """A server that accepts and never answers fails the send once its answer is overdue
    (twice delivery.timeout): the send thread ends with a failure, not given up on."""
    webhook.hang()
    cs = channels({"c": (webhook.json_url,)}, DeliverySettings(timeout=0.5))
    # The outer bound only guards the test run; the send must end on its own timeout.
    result = await asyncio.wait_for(cs.send(only(cs).key, TITLE, BODY), timeout=30)
    assert not result.ok
    assert len(webhook.requests) == 1
    # apprise words it as a refused connection; the error says it waited for an answer.
    assert result.error is not None
    assert result.error.endswith("(no answer within 1s)")


async def test_an_answer_later_than_delivery_timeout_is_still_a_success(
    webhook: WebhookReceiver,
) -> None:
    """A service that answers after delivery.timeout, but within twice it, has the alert: its
    success counts. Cut off at delivery.timeout, the send failed and its retry sent it again
    (an operator's slow webhook got each alert two or three times)."""
    webhook.answer_late(1.5)
    cs = channels({"c": (webhook.json_url,)}, DeliverySettings(timeout=1.0))
    result = await asyncio.wait_for(cs.send(only(cs).key, TITLE, BODY), timeout=30)
    assert (result.ok, result.error) == (True, None)
    assert [r.json["message"] for r in webhook.requests] == [BODY]


async def test_a_send_runs_apprise_inline_on_one_of_our_threads(
    webhook: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One thread hop per send: apprise's per-call deadline is off (service_timeout=0), so it
    runs the plugin in the calling thread instead of handing it to its own pool."""
    from apprise.plugins.custom_json import NotifyJSON

    threads: list[str] = []
    send = NotifyJSON.send

    def observed(self: NotifyJSON, *args: object, **kwargs: object) -> bool:
        threads.append(threading.current_thread().name)
        return bool(send(self, *args, **kwargs))

    monkeypatch.setattr(NotifyJSON, "send", observed)
    cs = channels({"c": (webhook.json_url,)})
    assert (await cs.send(only(cs).key, TITLE, BODY)).ok
    assert len(threads) == 1
    assert threads[0].startswith("notifier-send")
    assert len(webhook.requests) == 1


async def test_apprise_retries_in_the_url_are_off(webhook: WebhookReceiver) -> None:
    """`?retry=3` would have apprise try four times inside one send; the deliverer owns
    retries, so a failing send is one request."""
    webhook.respond(500, times=4)
    cs = channels({"c": (f"{webhook.json_url}?retry=3&wait=0",)})
    result = await cs.send(only(cs).key, TITLE, BODY)
    assert not result.ok
    assert len(webhook.requests) == 1


# --- apprise behaviour we depend on ----------------------------------------------------------


def _record_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Replace time.sleep (used by apprise's throttle in its worker threads) with a recorder."""
    sleeps: list[float] = []
    record: Callable[[float], None] = sleeps.append
    monkeypatch.setattr(time, "sleep", record)
    return sleeps


@contextlib.contextmanager
def _own_apprise_pools(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """apprise's module-wide thread pools, made anew for the block and shut down after it:
    their threads are not daemons and would outlive the test (ours never use them)."""
    for name in ("_shared_executor", "_coordinator_executor"):
        monkeypatch.setattr(apprise.apprise, name, None)
    try:
        yield
    finally:
        for name in ("_shared_executor", "_coordinator_executor"):
            pool: ThreadPoolExecutor | None = getattr(apprise.apprise, name)
            if pool is not None:
                pool.shutdown(wait=True)
                setattr(apprise.apprise, name, None)


async def test_apprise_2_throttle_is_present_and_disabled(
    webhook: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pins apprise 2.x: ntfy throttles 5.5 s per instance by default; our built objects don't."""
    assert apprise.__version__.split(".")[0] == "2"
    url = webhook.ntfy_url()
    sleeps = _record_sleeps(monkeypatch)

    # Control: a plain apprise object sleeps before its second send (the throttle exists).
    with _own_apprise_pools(monkeypatch):
        plain = apprise.Apprise()
        assert plain.add(url)
        assert plain[0].request_rate_per_sec == pytest.approx(5.5)
        for n in range(2):
            with await plain.async_notify(body=f"plain {n}") as result:
                assert result
    assert any(s > 5 for s in sleeps)

    # Ours: the same attribute is zeroed, so two sends never wait.
    sleeps.clear()
    cs = channels({"c": (url,)})
    key = only(cs).key
    assert (await cs.send(key, TITLE, "one")).ok
    assert (await cs.send(key, TITLE, "two")).ok
    assert not any(s >= 1 for s in sleeps)
    assert [r.json["message"] for r in webhook.requests[2:]] == ["one", "two"]


async def test_long_message_is_split_within_the_service_limit(tls_proxy: TlsProxy) -> None:
    """overflow=split sends a 6000-char body to Telegram as pieces of at most 4096, all of it
    once; apprise sends the title first, as a piece of its own."""
    cs = channels({"tg": (TG_URL,)}, DeliverySettings(timeout=5, overflow="split"))
    body = "x" * 6000
    assert (await cs.send(only(cs, "tg").key, "t", body)).ok
    texts = [r.json["text"] for r in tls_proxy.of(TELEGRAM_HOST)]
    assert texts == ["<b>t</b>", "x" * 4096, "x" * 1904]  # the title goes as its own piece


async def test_long_message_is_truncated_by_default(tls_proxy: TlsProxy) -> None:
    """overflow=truncate (default) sends one piece, cut to the service limit: one request
    per alert, so a retry can never show a piece twice."""
    cs = channels({"tg": (TG_URL,)}, DeliverySettings(timeout=5))
    assert (await cs.send(only(cs, "tg").key, "t", "x" * 6000)).ok
    (request,) = tls_proxy.of(TELEGRAM_HOST)
    assert len(request.json["text"]) <= 4096


# --- building, keys, check_url ---------------------------------------------------------------


def test_targets_keys_and_privacy_display() -> None:
    """Each URL is a target keyed by sha256(url)[:16], shown in privacy form, listed in order."""
    mail = "mailto://alerts:hunter2pass@127.0.0.1:2525?from=a@example.com&to=b@example.com"
    cs = channels({"ops": (mail, TG_URL, mail), "chat": (TG_URL,)})
    assert cs.names == ("ops", "chat")
    first, second = cs.targets("ops")  # the duplicate URL collapsed
    assert first.key == hashlib.sha256(mail.encode()).hexdigest()[:16]
    assert "hunter2pass" not in first.display
    assert TG_TOKEN.split(":")[1] not in second.display
    assert cs.knows(second.key)
    assert not cs.knows("0" * 16)
    assert cs.channel_of(second.key) == "ops"  # same URL in two channels: first one owns it
    assert cs.targets("chat")[0].key == second.key
    assert cs.channel_of("0" * 16) is None
    assert cs.display(first.key) == first.display


def test_the_display_leaves_out_what_the_notifier_sets_itself() -> None:
    """apprise writes its defaults (overflow=upstream, retry=0 …) into a URL's display; the
    notifier applies delivery.overflow and .timeout and no retries of apprise's, so a display
    showing them would say what is not done."""
    url = "ntfy://127.0.0.1:8080/fills?retry=3&cto=9&priority=high"
    display = only(channels({"c": (url,)}, HTML)).display
    assert display.startswith("ntfy://127.0.0.1:8080/")
    assert "priority=high" in display
    for tuned in ("overflow=", "retry=", "wait=", "cto=", "rto="):
        assert tuned not in display


@pytest.mark.parametrize(
    "url",
    [
        "json://127.0.0.1:8080/",
        "ntfy://127.0.0.1:8080/topic",
        "mailto://u:p@127.0.0.1:2525?from=a@example.com&to=b@example.com",
        "mailtos://bot:Pw%40Secret%23x@smtp.example.com?to=me@example.com",  # encoded: fine
        "pover://USERKEYUSERKEYUSERKEYUSERKEY@APPTOKENAPPTOKENAPPTOKENAPPTOK",
        SLACK_URL,
        TG_URL,
        "console://",
    ],
)
def test_check_url_accepts_buildable_urls(url: str) -> None:
    """URLs apprise can build pass the check."""
    assert check_url(url) is None


@pytest.mark.parametrize(
    ("url", "expected", "secret"),
    [
        (
            "slak://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlaz",
            "the scheme 'slak://' (did you mean 'slack://'?)",
            "TIiajkdnlaz",
        ),
        ("discrod://123/tokenQQ", "(did you mean 'discord://'?)", "tokenQQ"),
        ("zzqx://a/secretZZ", "the scheme 'zzqx://'", "secretZZ"),
        (  # the token missing: a part, not the service, is what is wrong
            "https://discord.com/api/webhooks/123456789012345678",
            "recognised only whole, as the service gave it (is a part missing?)",
            "123456789012345678",
        ),
        ("tgram://not-a-valid-token-Xyz123/", "apprise rejected the URL (tgram)", "Xyz123"),
        ("hooks.slack.com/services/AAA/BBB/CCCsecret", "not an apprise URL", "CCCsecret"),
        # apprise builds any port, so check-config said ok and every send failed.
        ("json://u:pw5ecret@127.0.0.1:99999/x", "port 99999 is out of range", "pw5ecret"),
        ("ntfy://127.0.0.1:70000/topicSecret", "port 70000 is out of range", "topicSecret"),
        # apprise only logs why (with the addresses): no sender it can form from an IP host.
        (
            "mailto://me:pwSecret@127.0.0.1:2525?to=desk@example.com",
            "apprise rejected the URL (mailto): is the sender one it can form? A server named"
            " by IP address has no domain to form it with: add ?from=alerts@example.com",
            "pwSecret",
        ),
        # A password's own @ or #, unencoded: the rest of it was read (and shown) as the host.
        (
            "mailtos://bot:Pw@SuperSecretPw99@smtp.example.com?to=me@example.com",
            "more than one @ before the host: an @ in a user name or password must be written %40",
            "SuperSecretPw99",
        ),
        (
            "mailtos://bot:abc#HashSecret99@smtp.example.com?to=me@example.com",
            "a # before the host's @: a # in a user name or password must be written %23",
            "HashSecret99",
        ),
    ],
)
def test_check_url_explains_without_secrets(url: str, expected: str, secret: str) -> None:
    """A URL apprise refuses gets a reason that names the scheme but none of its secrets."""
    message = check_url(url)
    assert message is not None
    assert expected in message
    assert secret not in message


def test_build_refuses_bad_url_with_config_error() -> None:
    """ChannelSet.build raises ConfigError locating the bad URL by path, without its secrets."""
    with pytest.raises(ConfigError) as caught:
        channels({"ops": ("json://127.0.0.1:1/", "tgram://bad-Token-Qq9/")})
    assert "channels.ops.urls[1]" in str(caught.value)
    assert "Token-Qq9" not in str(caught.value)


# --- send-test -------------------------------------------------------------------------------


async def test_send_test_reports_each_url(webhook: WebhookReceiver) -> None:
    """send_test sends to every URL and reports each one's outcome, in config order."""
    webhook.respond(500)
    cs = channels({"a": (webhook.json_url,), "b": (webhook.ntfy_url("x"), webhook.ntfy_url("y"))})
    results = await cs.send_test()
    assert [t.channel for t, _ in results] == ["a", "b", "b"]
    assert sorted(r.ok for _, r in results) == [False, True, True]
    assert len(webhook.requests) == 3

    only_b = await cs.send_test("b")
    assert [(t.channel, r.ok) for t, r in only_b] == [("b", True), ("b", True)]
    assert {r.json["topic"] for r in webhook.requests[3:]} == {"x", "y"}


async def test_send_test_says_why_a_send_failed(smtp_server: SmtpServer) -> None:
    """A test send's failure carries the cause apprise logs only at DEBUG: the SMTP server's
    reply, the refused connection; never the password, and apprise stays at WARNING after."""
    port = closed_port()
    cs = channels(
        {
            "mail": (smtp_server.url(password="wrong-Pa55word"),),
            "hook": (f"json://127.0.0.1:{port}/x",),
        }
    )
    results = {target.channel: result for target, result in await cs.send_test()}
    mail, hook = results["mail"].error or "", results["hook"].error or ""
    assert mail.endswith("; cause: 535 5.7.8 Authentication credentials invalid")
    assert hook.endswith("; cause: [Errno 111] Connection refused")
    assert "wrong-Pa55word" not in mail
    assert logging.getLogger("apprise").level != logging.DEBUG
    # An alert's first send reads apprise's log at WARNING only, as a busy daemon should; a
    # retry (the deliverer asks for `diagnose`) says why, and leaves apprise as it was.
    plain = await cs.send(only(cs, "hook").key, TITLE, BODY)
    assert plain.error is not None
    assert "cause:" not in plain.error
    retry = await cs.send(only(cs, "hook").key, TITLE, BODY, diagnose=True)
    assert (retry.error or "").endswith("; cause: [Errno 111] Connection refused")
    assert logging.getLogger("apprise").level != logging.DEBUG


def test_apprise_s_log_level_returns_when_the_last_diagnosis_ends() -> None:
    """Retries on send threads diagnose at once: the first to end does not take DEBUG from
    the others; the last puts the level back."""
    logger = logging.getLogger("apprise")
    before = logger.level
    first, second = diagnosing(), diagnosing()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert logger.level == logging.DEBUG
    second.__exit__(None, None, None)
    assert logger.level == before


async def test_send_test_unknown_channel_is_key_error() -> None:
    """Asking send_test for a channel that does not exist is a KeyError, not a silent no-op."""
    cs = channels({"a": ("console://",)})
    with pytest.raises(KeyError):
        await cs.send_test("nope")


class TricklingPeer:
    """Reads a POST, then answers 200 one header line every `gap` seconds (each read is quick).

    `lines[n]` header lines for the n-th request (the last entry for any later one).
    """

    def __init__(self, *, gap: float, lines: list[int]) -> None:
        self.gap, self.lines = gap, lines
        self.posts: list[float] = []
        self.answered: list[float] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> TricklingPeer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._handlers:  # answers still trickling: the client gave up on them
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._answer(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client gave up on the answer
        finally:
            writer.close()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
        await reader.readexactly(length)
        self.posts.append(time.monotonic())  # the channel has the message now
        writer.write(b"HTTP/1.1 200 OK\r\n")
        for n in range(self.lines[min(len(self.posts), len(self.lines)) - 1]):
            await asyncio.sleep(self.gap)
            writer.write(b"X-Slow-%d: 1\r\n" % n)
            await writer.drain()
        writer.write(b"Content-Length: 2\r\nConnection: close\r\n\r\n{}")
        await writer.drain()
        self.answered.append(time.monotonic())


async def test_a_slow_send_that_succeeds_counts_as_sent() -> None:
    """A 200 arriving after delivery.timeout (each read within it) is a success, not a retry."""
    async with TricklingPeer(gap=0.15, lines=[4]) as peer:  # answered after ~0.6 s
        cs = channels({"c": (f"json://127.0.0.1:{peer.port}/",)}, DeliverySettings(timeout=0.3))
        result = await asyncio.wait_for(cs.send(only(cs).key, TITLE, BODY), timeout=30)
    assert result.ok
    assert len(peer.posts) == len(peer.answered) == 1


async def test_a_given_up_send_holds_its_target_until_its_thread_ends() -> None:
    """Past send_deadline a send fails; the target's next send waits for that thread or gives up
    unsent after `timeout`, and never runs beside it."""
    async with TricklingPeer(gap=0.15, lines=[8, 0]) as peer:  # first answered after ~1.2 s
        cs = channels({"c": (f"json://127.0.0.1:{peer.port}/",)}, DeliverySettings(timeout=0.2))
        first = await asyncio.wait_for(cs.send(only(cs).key, TITLE, BODY), timeout=30)
        assert first.error == "no outcome within 0.6s (it may still arrive)"
        assert peer.answered == []  # given up on while its answer was still coming
        busy = await asyncio.wait_for(cs.send(only(cs).key, TITLE, BODY), timeout=30)
        assert busy.error == "an earlier send to this target is still running after 0.2s"
        assert len(peer.posts) == 1  # nothing was sent beside the running one
        async with asyncio.timeout(10):
            while not peer.answered:
                await asyncio.sleep(0.05)
        last = await asyncio.wait_for(cs.send(only(cs).key, TITLE, "next"), timeout=30)
    assert last.ok
    assert len(peer.posts) == 2
    assert peer.answered[0] <= peer.posts[1]


async def test_time_queued_for_a_send_thread_does_not_count_against_the_send() -> None:
    """With every send thread busy, a send that starts late still gets its whole deadline:
    queued for 0.9 s of its 1.5 s, then 1 s on the wire, it succeeds. (The queueing itself is
    the stimulus, so it is real time; the margins are 0.6 s and 0.5 s either way.)"""
    release = threading.Event()
    pool = send_attempt._senders()
    blockers = [pool.submit(lambda: release.wait(30)) for _ in range(send_attempt.SEND_THREADS)]
    try:
        await until(lambda: pool._waiting == 0)  # every thread holds a blocker
        async with TricklingPeer(gap=0.25, lines=[4]) as peer:  # answered ~1 s after the POST
            spec = {"c": (f"json://127.0.0.1:{peer.port}/",)}
            cs = channels(spec, DeliverySettings(timeout=0.5))
            sending = asyncio.ensure_future(cs.send(only(cs).key, TITLE, BODY))
            await until(lambda: pool._waiting == 1)
            await asyncio.sleep(0.9)
            assert pool._waiting == 1  # still queued: it has not started yet
            release.set()
            result = await asyncio.wait_for(sending, timeout=30)
    finally:
        release.set()
    for blocker in blockers:
        blocker.result(timeout=5)
    assert result.ok
    assert len(peer.posts) == 1


async def test_a_reload_keeps_a_busy_target_taken() -> None:
    """A channel set built on reload takes over the locks: no send beside a given-up one."""
    async with TricklingPeer(gap=0.15, lines=[8, 0]) as peer:
        spec, delivery = {"c": (f"json://127.0.0.1:{peer.port}/",)}, DeliverySettings(timeout=0.2)
        old = channels(spec, delivery)
        first = await asyncio.wait_for(old.send(only(old).key, TITLE, BODY), timeout=30)
        assert not first.ok
        new = channels(spec, delivery)
        new.take_locks(old)
        busy = await asyncio.wait_for(new.send(only(new).key, TITLE, BODY), timeout=30)
        assert busy.error == "an earlier send to this target is still running after 0.2s"
        assert len(peer.posts) == 1


async def test_a_send_that_never_got_a_thread_is_given_up_unsent() -> None:
    """Every send thread busy past the deadline: the send fails and is never made later."""
    release = threading.Event()
    pool = send_attempt._senders()
    blockers = [pool.submit(lambda: release.wait(5)) for _ in range(send_attempt.SEND_THREADS)]
    try:
        async with TricklingPeer(gap=0.0, lines=[0]) as peer:
            spec = {"c": (f"json://127.0.0.1:{peer.port}/",)}
            cs = channels(spec, DeliverySettings(timeout=0.2))
            result = await asyncio.wait_for(cs.send(only(cs).key, TITLE, BODY), timeout=30)
            release.set()
            for blocker in blockers:
                blocker.result(timeout=5)
            # Every thread back waiting for work: a send taken from the queue has ended.
            await until(lambda: pool._waiting == 0 and pool._idle == pool.threads)
    finally:
        release.set()
    assert result.error == "no send thread free within 0.6s"
    assert peer.posts == []


async def test_trickling_peers_leave_send_threads_for_a_healthy_channel() -> None:
    """Peers answering a byte at a time (each read quick, the exchange endless) on as many
    targets as there are send threads: each given-up send lends the pool a thread, so a
    healthy channel's send still goes out (it found "no send thread free" before)."""
    async with (
        TricklingPeer(gap=0.05, lines=[10_000]) as slow,
        TricklingPeer(gap=0.0, lines=[0]) as fast,
    ):
        spec = {
            "slow": tuple(
                f"json://127.0.0.1:{slow.port}/t{n}" for n in range(send_attempt.SEND_THREADS)
            ),
            "fast": (f"json://127.0.0.1:{fast.port}/",),
        }
        cs = channels(spec, DeliverySettings(timeout=0.2))
        stuck = await asyncio.wait_for(
            asyncio.gather(*(cs.send(t.key, TITLE, BODY) for t in cs.targets("slow"))), 30
        )
        assert [r.error for r in stuck] == ["no outcome within 0.6s (it may still arrive)"] * len(
            stuck
        )
        assert slow.answered == []  # every one still trickling, holding its thread
        result = await asyncio.wait_for(cs.send(only(cs, "fast").key, TITLE, BODY), 30)
    assert result.ok
    assert len(fast.posts) == 1


async def test_a_late_success_answers_the_retry_of_that_message() -> None:
    """A send given up on that the service took after all is not sent again by its retry;
    another alert with the very same text is (the memory is by message, not by text)."""
    async with TricklingPeer(gap=0.15, lines=[8, 0]) as peer:  # first answered after ~1.2 s
        cs = channels({"c": (f"json://127.0.0.1:{peer.port}/",)}, DeliverySettings(timeout=0.2))
        key = only(cs).key
        first = await asyncio.wait_for(cs.send(key, TITLE, BODY, message="a1"), timeout=30)
        assert not first.ok
        async with asyncio.timeout(10):
            while not peer.answered:
                await asyncio.sleep(0.05)
        same_text = await asyncio.wait_for(cs.send(key, TITLE, BODY, message="a2"), timeout=30)
        assert same_text.ok
        assert len(peer.posts) == 2  # a different alert that reads the same: sent
        retry = await asyncio.wait_for(cs.send(key, TITLE, BODY, message="a1"), timeout=30)
    assert retry.ok
    assert len(peer.posts) == 2  # the retry was answered by the late 200


async def test_a_given_up_send_is_sending_until_its_thread_ends() -> None:
    """While the thread of a send given up on runs, each alert of its message is `sending`
    (the deliverer holds its fallback meanwhile, for one more send deadline at most); once
    the thread ends, none is, and a delivered one is known delivered. A send that failed at
    once leaves nothing sending."""
    async with TricklingPeer(gap=0.15, lines=[8]) as peer:  # answered after ~1.2 s
        cs = channels({"c": (f"json://127.0.0.1:{peer.port}/",)}, DeliverySettings(timeout=0.2))
        key = only(cs).key
        fold = await asyncio.wait_for(cs.send(key, TITLE, BODY, message="a\nb"), timeout=30)
        assert fold.error == "no outcome within 0.6s (it may still arrive)"
        assert cs.sending(key, "a")
        assert cs.sending(key, "b")
        assert not cs.sending(key, "c")
        async with asyncio.timeout(10):
            while not cs.take_delivered(key, "a"):  # the thread ended with the late 200
                await asyncio.sleep(0.05)
        assert peer.answered
        assert not cs.sending(key, "a")
        assert not cs.sending(key, "b")
        assert cs.take_delivered(key, "b")
    closed = channels({"c": (f"json://127.0.0.1:{closed_port()}/",)})
    refused = await closed.send(only(closed).key, TITLE, BODY, message="d")
    assert not refused.ok
    assert not closed.sending(only(closed).key, "d")


async def test_a_late_fold_answers_its_alerts_retried_one_by_one() -> None:
    """A fold of b and c given up on, then taken by the service: their retries, which may go
    alone (no rate wait any more) or folded otherwise, are answered, not sent again. A
    message only partly delivered is sent whole here; the deliverer asks `take_delivered`
    first and leaves b out of its folds."""
    async with TricklingPeer(gap=0.15, lines=[8, 0, 0]) as peer:
        cs = channels({"c": (f"json://127.0.0.1:{peer.port}/",)}, DeliverySettings(timeout=0.2))
        key = only(cs).key
        fold = await asyncio.wait_for(cs.send(key, TITLE, BODY, message="b\nc"), timeout=30)
        assert not fold.ok
        async with asyncio.timeout(10):
            while not peer.answered:
                await asyncio.sleep(0.05)
        mixed = await asyncio.wait_for(cs.send(key, TITLE, BODY, message="b\nd"), timeout=30)
        assert mixed.ok
        assert len(peer.posts) == 2  # d was never delivered: the fold with it is sent
        assert cs.take_delivered(key, "b")  # what the deliverer asks before folding b
        assert not cs.take_delivered(key, "b")  # and then it is forgotten
        assert not cs.take_delivered(key, "d")
        alone = await asyncio.wait_for(cs.send(key, TITLE, BODY, message="c"), timeout=30)
        assert alone.ok
    assert len(peer.posts) == 2  # c's retry was answered by the fold's late 200


async def test_a_given_up_send_keeps_its_target_through_two_reloads() -> None:
    """A URL dropped by one reload and back in the next still waits for its running send."""
    async with TricklingPeer(gap=0.15, lines=[8, 0]) as peer:
        url = f"json://127.0.0.1:{peer.port}/"
        delivery = DeliverySettings(timeout=0.2)
        old = channels({"c": (url,)}, delivery)
        first = await asyncio.wait_for(old.send(only(old).key, TITLE, BODY), timeout=30)
        assert not first.ok
        middle = channels({"d": ("json://127.0.0.1:9/",)}, delivery)
        middle.take_locks(old)
        new = channels({"c": (url,)}, delivery)
        new.take_locks(middle)
        busy = await asyncio.wait_for(new.send(only(new).key, TITLE, BODY), timeout=30)
    assert busy.error == "an earlier send to this target is still running after 0.2s"
    assert len(peer.posts) == 1


async def test_the_outcome_of_a_given_up_attempt_reaches_on_late() -> None:
    """Given up on while running: the target stays taken until the thread ends with a
    result, which goes to on_late before the target is free again."""
    lock, finish, late = asyncio.Lock(), threading.Event(), []

    def slow() -> str:
        finish.wait(5)
        return "sent"

    with pytest.raises(send_attempt.GaveUp, match=r"no outcome within 0\.05s"):
        await send_attempt.attempt(slow, lock=lock, lock_wait=1, deadline=0.05, on_late=late.append)
    assert lock.locked()
    finish.set()
    async with asyncio.timeout(5):
        async with lock:  # free once the thread ended and on_late ran
            assert late == ["sent"]


async def test_a_webhook_whose_secret_is_its_path_never_shows_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """json://host/hook/<token> (Make, Zapier, n8n): masked in the display, errors and logs."""
    caplog.set_level(logging.DEBUG)
    token = "a7f3c9e1d5b2SECRETWEBHOOKTOKEN"
    cs = channels({"hook": (f"json://127.0.0.1:9/hook/{token}",)})  # nothing listens on 9
    target = only(cs, "hook")
    fingerprint = hashlib.sha256(token.encode()).hexdigest()[:4]
    assert target.display.startswith(f"json://127.0.0.1:9/hook/***{fingerprint}?")
    result = await cs.send(target.key, "title", "body")
    assert not result.ok
    assert token not in (result.error or "")
    assert not [r for r in caplog.records if token in r.getMessage()]


async def test_an_ntfy_topic_never_shows(
    webhook: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    """On a public ntfy server the topic is the only credential: masked in the display, and
    kept out of errors and logs when the server refuses it."""
    caplog.set_level(logging.DEBUG)
    topic = "my-secret-topic-9f8e7d"
    webhook.respond(403, body=b'{"error": "forbidden"}')
    cs = channels({"phone": (webhook.ntfy_url(topic),)})
    target = only(cs, "phone")
    assert topic not in target.display
    result = await cs.send(target.key, "title", "body")
    assert not result.ok
    assert topic not in (result.error or "")
    assert not [r for r in caplog.records if topic in r.getMessage()]


@pytest.mark.parametrize(
    "url",
    [
        f"tgram://{TG_TOKEN}/111/222",
        "ntfy://127.0.0.1:8080/alerts/backup",
        "mailto://u:p@127.0.0.1:2525?from=a@example.com&to=b@example.com,c@example.com",
    ],
)
def test_a_url_with_several_recipients_is_refused(url: str) -> None:
    """apprise reports one result for all of a URL's recipients: one refusing would make each
    retry send the alert again to the rest. One URL per recipient instead."""
    message = check_url(url)
    assert message is not None
    assert "sends to 2 recipients as one" in message
    assert "one URL per recipient" in message


def test_plain_webhook_path_words_stay_shown_and_unscrubbed() -> None:
    """Only token-like segments are masked: `api/webhook` stays readable, is no secret (it
    would be scrubbed from every log line, 'api.telegram.org' included), and two tokens on
    one host show apart."""
    cs = channels(
        {
            "ha": ("json://ha.local:8123/api/webhook/x",),
            "n8n": ("jsons://n8n.local/webhook/4f7a9e2c11", "jsons://n8n.local/webhook/9b1d3e5f22"),
        }
    )
    (ha,) = cs.targets("ha")
    assert ha.display.startswith("json://ha.local:8123/api/webhook/x?")
    assert "api" not in cs._by_key[ha.key].secrets
    first, second = cs.targets("n8n")
    assert first.display.startswith("jsons://n8n.local/webhook/***")
    assert first.display != second.display
    assert "4f7a9e2c11" not in first.display
    zapier = channels({"z": ("jsons://hooks.zapier.com/hooks/catch/1234567/kqwzxrb/",)})
    shown = only(zapier, "z").display
    assert shown.startswith("jsons://hooks.zapier.com/hooks/catch/***")
    assert "1234567" not in shown
    assert "kqwzxrb" not in shown  # letters only: a token all the same


def test_a_service_s_limits_come_from_apprise() -> None:
    """Characters and lines per message, as apprise knows them; Slack blocks hold 3,000."""
    limits = channels(
        {
            "tg": (TG_URL,),
            "kodi": ("kodi://127.0.0.1:9",),
            "blocks": ("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7/?blocks=yes",),
        }
    )
    assert limits.message_limit(only(limits, "tg").key) == MessageLimit(chars=4096)
    assert limits.message_limit(only(limits, "kodi").key) == MessageLimit(chars=32768, lines=2)
    assert limits.message_limit(only(limits, "blocks").key) == MessageLimit(chars=3000)
    assert limits.message_limit("0" * 16) is None


def test_a_given_up_send_holds_the_fallback_for_a_bounded_time() -> None:
    """`sending` is true from the give-up until the thread ends, `hold` seconds at most: a
    peer trickling its answer for ever must not keep an alert from its fallback for ever.
    Two attempts of one alert given up on: it is sending until both have ended."""
    late = LateDeliveries()
    late.running("t", "a\nb", since=100.0)
    assert late.sending("t", "a", now=100.0, hold=90.0)
    assert late.sending("t", "b", now=189.9, hold=90.0)
    assert not late.sending("t", "a", now=190.0, hold=90.0)  # held long enough
    assert not late.sending("t", "c", now=100.0, hold=90.0)
    late.running("t", "a", since=150.0)  # a retry of it, given up on too
    late.remember("t", "a\nb", delivered=False)  # the first thread ends
    assert late.sending("t", "a", now=160.0, hold=90.0)  # the second still runs
    assert not late.sending("t", "b", now=160.0, hold=90.0)
    late.remember("t", "a", delivered=True)
    assert not late.sending("t", "a", now=160.0, hold=90.0)
    assert late.take("t", "a")


def test_only_a_connection_error_that_waited_out_the_timeout_says_so() -> None:
    """ "(no answer within Ns)" is for apprise's connection error after the timeout, counted
    from the send's start: not for an HTTP status however slow, nor a quick refusal."""
    refused = "json: failure: A Connection error occurred sending JSON notification to h."
    assert waited_out(refused, took=3.0, timeout=3.0)
    assert waited_out(refused, took=2.7, timeout=3.0)
    assert not waited_out(refused, took=0.01, timeout=3.0)
    assert not waited_out("json: failure: JSON notification failed: error=500.", 9.0, 3.0)
    assert not waited_out(None, took=9.0, timeout=3.0)


def test_the_note_names_the_timeout_the_send_waited_out() -> None:
    """The connect is bounded by delivery.timeout, the answer by twice it: a connection error
    after the first is a host that never answered the connect (a firewall dropping packets),
    after the second a service that never answered the request."""
    refused = "json: failure: A Connection error occurred sending JSON notification to h."
    assert timeout_note(refused, 6.0, 3.0, 6.0) == f"{refused} (no answer within 6s)"
    assert timeout_note(refused, 3.0, 3.0, 6.0) == f"{refused} (no connection within 3s)"
    assert timeout_note(refused, 0.01, 3.0, 6.0) == refused
    assert timeout_note("json: failure: error=500.", 9.0, 3.0, 6.0) == "json: failure: error=500."


# --- the suite's loopback guard (conftest.py) ------------------------------------------------

UNROUTED = "192.0.2.1"  # TEST-NET-1: never routed, so a guard that let it through would hang


async def test_the_guard_refuses_any_way_off_loopback(loopback_only: LoopbackOnly) -> None:
    """A plain connect, connect_ex, asyncio's connection and a name lookup off loopback are each
    refused naming the address; loopback still works. Each refusal also fails the test at
    teardown (a swallowed one too): the list is checked, then emptied here."""
    with socket.socket() as sock, pytest.raises(OutsideNetworkError, match=re.escape(UNROUTED)):
        sock.connect((UNROUTED, 9))
    with socket.socket() as sock, pytest.raises(OutsideNetworkError, match=re.escape(UNROUTED)):
        sock.connect_ex((UNROUTED, 9))
    with pytest.raises(OutsideNetworkError, match=re.escape(UNROUTED)):
        await asyncio.wait_for(asyncio.open_connection(UNROUTED, 9), timeout=10)
    with pytest.raises(OutsideNetworkError, match=re.escape(SLACK_HOST)):
        socket.getaddrinfo(SLACK_HOST, 443)
    assert len(loopback_only.refused) == 4
    loopback_only.refused.clear()
    assert socket.getaddrinfo("localhost", 9)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        with socket.create_connection(listener.getsockname(), timeout=10):
            pass
    assert loopback_only.refused == []
