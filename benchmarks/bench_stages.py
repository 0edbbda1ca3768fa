"""Where a fill's CPU goes: each stage of the daemon's hot path alone, on bench_daemon's workload.

Run: .venv/bin/python benchmarks/bench_stages.py [--fills 20000] [--sends 300] [--quick]

bench_daemon measures the whole (first frame to last alert, and the daemon's CPU a fill). This
takes it apart: the same frames and rules, each stage run alone over all the fills, best of
three. A stage alone runs with warm caches and no event loop between fills, so the daemon's
figure is higher than the sum. Baselines in the same run: `json.loads` beside decoding, and a
bare `http.client` POST over a kept-alive connection beside an alert's send.

- frames: websockets' own frame parser (sans-I/O) fed the venue's bytes 64 KiB at a time, as a
  reader that is behind gets them (the receive-only client, never behind, wakes per frame);
- read (live_frames.py: msgspec decoding the flat shapes into typed fields, then the checks
  normalize would make), beside `json.loads` alone and the general path (our JSON decoder, then
  normalize) that every other shape takes; identity (Fill.key and occurrence numbering); match
  (1,000 rules);
- pipeline: the real Pipeline and state file (dedupe, match, plan, record: quiet fills a batch
  at a time, each hit with its alert), fed as the feed feeds it;
- send: one alert through notifier's channel (apprise json://, keep-alive sessions, our send
  pool) to a loopback webhook in another process: the process's CPU for it, all threads;
  beside it, apprise called alone (no thread hop) and a bare http.client POST.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import apprise
from websockets.client import ClientProtocol
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Receiver, daemon_config, frames, free_port, rules_yaml

from notifier import keepalive
from notifier.channels import ChannelSet
from notifier.config import parse
from notifier.events import Fill
from notifier.live_frames import read_live_frame
from notifier.normalize import Rejected, decode_frame, normalize_message
from notifier.pipeline import Pipeline
from notifier.recurrence import Recurrences
from notifier.settings import Settings
from notifier.store import StateStore

READ = 65536  # bytes a socket read hands the parser when the reader is behind
MAX_BYTES = 65536


def best_of(runs: int, work: Callable[[], object]) -> float:
    """Fastest wall time of `runs` runs, in seconds."""
    best = float("inf")
    for _ in range(runs):
        began = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - began)
    return best


def process_cpu() -> float:
    """User + system CPU of this process, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def reference_read(text: str) -> object:
    """A frame read the general way (normalize.py's), which takes every shape."""
    decoded = decode_frame(text, max_bytes=MAX_BYTES)
    return decoded if isinstance(decoded, Rejected) else normalize_message(decoded)


def wire_bytes(texts: list[str]) -> bytes:
    """The frames as the venue's websockets server puts them on the socket."""
    server = ServerProtocol()
    server.state = State.OPEN
    for text in texts:
        server.send_text(text.encode())
    return b"".join(server.data_to_send())


def parse_frames(data: bytes) -> int:
    """Parse `data` with websockets' client protocol, as a connection's reader would."""
    client = ClientProtocol(parse_uri("ws://127.0.0.1/"))
    client.state = State.OPEN
    client.parser = client.parse()  # the frame parser, past the handshake
    next(client.parser)
    count = 0
    for start in range(0, len(data), READ):
        client.receive_data(data[start : start + READ])
        for frame in client.events_received():
            frame.data.decode()
            count += 1
    return count


def settings_for(tmp: Path, rules: int, hook_port: int) -> Settings:
    """The daemon benchmark's config, parsed as `notifier run` parses it."""
    path = daemon_config(
        tmp / "config.yaml",
        base_url="http://127.0.0.1:9",
        hook_port=hook_port,
        rules=rules_yaml(rules),
    )
    env = {"POLYSIM_API_KEY": "ps_live_benchmark"}
    return parse(path.read_text(encoding="utf-8"), source=path, env=env)


async def run_pipeline(
    settings: Settings, channels: ChannelSet, path: Path, fills: list[Fill]
) -> float:
    """Seconds to take `fills` through a fresh Pipeline and state file, as the feed feeds it."""
    loop = asyncio.get_running_loop()
    with StateStore(path, defer_commit=loop.call_soon) as store:
        pipeline = Pipeline(
            rules=settings.rules,
            targets=channels,
            store=store,
            titles=None,
            on_recorded=lambda targets: None,
        )
        began = time.perf_counter()
        task = asyncio.create_task(pipeline.run())
        for n, fill in enumerate(fills):
            await pipeline.submit(fill, "live")
            if n % 150 == 149:  # the feed reader yields every ~5 ms: ~150 fills at this rate
                await asyncio.sleep(0)
        pipeline.close()
        await task
        store.flush()
        elapsed = time.perf_counter() - began
        if pipeline.stats.processed != len(fills):
            raise SystemExit(f"pipeline recorded {pipeline.stats.processed} of {len(fills)}")
    return elapsed


async def send_costs(channels: ChannelSet, port: int, sends: int) -> tuple[float, float, float]:
    """CPU seconds per alert: through notifier's channel, through apprise alone (called here,
    no thread hop), and a bare http.client POST."""
    target = channels.targets("hook")[0].key
    body = "BUY 777 Yes @ 0.42 on Benchmark market 7"
    for _ in range(20):  # warm: the send pool's threads, the kept-alive connection
        await channels.send(target, "12345", body)
    before = process_cpu()
    for n in range(sends):
        result = await channels.send(target, str(n), body, message=f"m{n}")
        if not result.ok:
            raise SystemExit(f"send failed: {result.error}")
    ours = (process_cpu() - before) / sends

    alone = apprise.Apprise(asset=apprise.AppriseAsset(service_timeout=0))
    alone.add(f"json://127.0.0.1:{port}/")
    before = process_cpu()
    for n in range(sends):
        if not alone.notify(body=body, title=str(n)):
            raise SystemExit("apprise's send failed")
    bare_apprise = (process_cpu() - before) / sends

    payload = json.dumps({"version": "1.0", "title": "12345", "message": body, "type": "info"})
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Content-Type": "application/json"}
    before = process_cpu()
    for _ in range(sends):
        connection.request("POST", "/", body=payload, headers=headers)
        connection.getresponse().read()
    bare = (process_cpu() - before) / sends
    connection.close()
    return ours, bare_apprise, bare


async def serve_webhook(port: int) -> None:
    """The webhook, run in its own process so its CPU is not counted as the sender's."""
    hook = Receiver()
    await hook.start(port)
    await asyncio.Event().wait()  # until terminated


async def harness(args: argparse.Namespace) -> None:
    texts = frames(args.fills)
    runs = args.runs
    us = 1e6 / args.fills
    rows: list[tuple[str, float, str]] = []

    data = wire_bytes(texts)
    if parse_frames(data) != args.fills:
        raise SystemExit("the parser did not give every frame back")
    rows.append(("frames (websockets parser)", best_of(runs, lambda: parse_frames(data)) * us, ""))

    baseline = best_of(runs, lambda: [json.loads(t) for t in texts]) * us
    reference = best_of(runs, lambda: [reference_read(t) for t in texts]) * us
    read = best_of(runs, lambda: [read_live_frame(t, max_bytes=MAX_BYTES) for t in texts]) * us
    rows.append(
        (
            "read (decode, normalize)",
            read,
            f"json.loads alone {baseline:.2f} us; json decoder + normalize {reference:.2f} us",
        )
    )
    fills = [f for t in texts if isinstance(f := read_live_frame(t, max_bytes=MAX_BYTES), Fill)]
    if len(fills) != args.fills:
        raise SystemExit(f"{len(fills)} of {args.fills} frames read as fills")

    def identities() -> None:
        recurrences = Recurrences()
        for text in texts:
            fill = read_live_frame(text, max_bytes=MAX_BYTES)
            assert isinstance(fill, Fill)
            recurrences.number_live(fill)

    identity = best_of(runs, identities) * us - rows[-1][1]
    rows.append(("identity (key, occurrence)", identity, ""))

    port = free_port()
    webhook = await asyncio.create_subprocess_exec(sys.executable, __file__, "--serve", str(port))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            settings = settings_for(Path(tmp), args.rules, port)
            rules = settings.rules
            rows.append(
                (
                    "match (1,000 rules)",
                    best_of(runs, lambda: [rules.match(f) for f in fills]) * us,
                    "",
                )
            )
            keepalive.install()
            channels = ChannelSet.build(settings.channels, delivery=settings.delivery)
            pipeline = min(
                [
                    await run_pipeline(settings, channels, Path(tmp) / f"state{n}.db", fills)
                    for n in range(runs)
                ]
            )
            hits = sum(1 for f in fills if rules.match(f))
            rows.append(("pipeline (dedupe..record)", pipeline * us, f"{hits} alerts recorded"))
            await wait_listening(port)
            ours, alone, bare = await send_costs(channels, port, args.sends)
    finally:
        webhook.terminate()
        await webhook.wait()
    per_fill = ours * hits / args.fills * 1e6
    rows.append(
        (
            "send, per fill (1 in 100)",
            per_fill,
            f"{ours * 1e3:.2f} ms an alert; apprise alone {alone * 1e3:.2f} ms, "
            f"bare http.client {bare * 1e3:.2f} ms",
        )
    )

    print(f"{args.fills} fills (bench_daemon's), {args.rules} rules; best of {runs}; us a fill")
    for name, cost, note in rows:
        print(f"  {name:<28} {cost:7.2f}   {note}")
    total = sum(cost for name, cost, _ in rows if not name.startswith("match"))
    print(
        f"  {'sum (match is in pipeline)':<28} {total:7.2f}   bench_daemon: the daemon's CPU a fill"
    )


async def wait_listening(port: int) -> None:
    """Until the webhook process accepts connections (bounded)."""
    for _ in range(200):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise SystemExit("the webhook process did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--fills", type=int, default=20_000)
    parser.add_argument("--rules", type=int, default=1000)
    parser.add_argument("--sends", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="5,000 fills, 100 sends, 1 run")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve_webhook(args.serve))
        return
    if args.quick:
        args.fills, args.sends, args.runs = 5000, 100, 1
    asyncio.run(harness(args))


if __name__ == "__main__":
    main()
