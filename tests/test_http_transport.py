"""The HTTP transports against real servers on loopback (no mocks).

Each test starts its own event service with BackgroundServer, so log positions and
/stats start from zero. Timing assertions compare within one run and leave wide
margins, because CI machines are slow and noisy.
"""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest

from edalab._errors import ConfigError, ExperimentError, PortInUse, ServiceUnavailable
from edalab._events import new_event
from edalab.transports.http import (
    BackgroundServer,
    EventServiceSpec,
    HttpPublisher,
    LongPollingSubscriber,
    PollingSubscriber,
    SseSubscriber,
    WebhookSubscriber,
    event_service_app,
    webhook_receiver_app,
)
from edalab.transports.http._restaurant import order_status_route

N_EVENTS = 50
COLLECT_TIMEOUT_S = 5.0


@pytest.fixture
def service():
    with BackgroundServer(event_service_app()) as server:
        yield server


def _stats(service: BackgroundServer) -> dict:
    return httpx.get(service.url + "/stats", timeout=2.0).json()


def _publish(service: BackgroundServer, n: int = N_EVENTS, key: str = "order-1") -> list:
    events = [new_event("order.cooking", key, {"i": i}, producer="test", seq=i) for i in range(n)]
    with HttpPublisher(service.url, timeout_s=2.0) as publisher:
        for event in events:
            publisher.publish(event)
    return events


def _collect(subscriber, n: int, timeout_s: float = COLLECT_TIMEOUT_S) -> list:
    deliveries = []
    deadline = time.monotonic() + timeout_s
    while len(deliveries) < n and time.monotonic() < deadline:
        deliveries += subscriber.receive(min(0.5, max(deadline - time.monotonic(), 0.0)))
    return deliveries


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _assert_all_in_order(deliveries, events) -> None:
    assert [d.event.id for d in deliveries] == [e.id for e in events]
    assert [d.event for d in deliveries] == events
    for d in deliveries:
        assert d.received_at_ns >= d.event.produced_at_ns


@pytest.mark.parametrize(
    "make_subscriber",
    [
        pytest.param(lambda url: PollingSubscriber(url, poll_interval_s=0.01, timeout_s=2.0), id="polling"),
        pytest.param(lambda url: LongPollingSubscriber(url, wait_s=2.0), id="long-polling"),
        pytest.param(lambda url: SseSubscriber(url, connect_timeout_s=2.0), id="sse"),
        pytest.param(lambda url: WebhookSubscriber(url, retries=0), id="webhook"),
    ],
)
def test_every_transport_delivers_all_events_in_order(service, make_subscriber):
    with make_subscriber(service.url) as subscriber:
        events = _publish(service)
        deliveries = _collect(subscriber, N_EVENTS)
        assert subscriber.receive(0.05) == []  # nothing duplicated afterwards
    _assert_all_in_order(deliveries, events)
    assert subscriber.counters.bytes_received == sum(len(e.to_bytes()) for e in events)
    if isinstance(subscriber, WebhookSubscriber):
        assert subscriber.counters.requests == 0  # the service makes the requests
    if isinstance(subscriber, SseSubscriber):
        assert subscriber.counters.requests == 1  # one stream for everything


def test_polling_counts_empty_responses_on_a_fixed_schedule(service):
    with PollingSubscriber(service.url, poll_interval_s=0.02, timeout_s=2.0) as subscriber:
        started = time.monotonic()
        assert subscriber.receive(0.5) == []
        elapsed_s = time.monotonic() - started
    assert 0.45 <= elapsed_s < 1.0
    # 0.5 s / 20 ms = 25 slots (+1 for the first poll at once); a slow machine may miss some.
    assert 12 <= subscriber.counters.requests <= 27
    assert subscriber.counters.empty_responses == subscriber.counters.requests
    assert _stats(service)["empty_responses"]["polls"] == subscriber.counters.requests


def test_polling_returns_empty_at_once_when_no_slot_is_before_the_deadline(service):
    with PollingSubscriber(service.url, poll_interval_s=10.0, timeout_s=2.0) as subscriber:
        subscriber.receive(0.0)  # slot 0: first poll happens immediately
        started = time.monotonic()
        assert subscriber.receive(0.1) == []
        assert time.monotonic() - started < 0.5
    assert subscriber.counters.requests == 1


def test_long_polling_without_events_makes_few_requests(service):
    with LongPollingSubscriber(service.url, wait_s=30.0) as subscriber:
        started = time.monotonic()
        assert subscriber.receive(1.0) == []
        elapsed_s = time.monotonic() - started
    assert 0.9 <= elapsed_s < 2.0
    assert 1 <= subscriber.counters.requests <= 3
    assert subscriber.counters.empty_responses == subscriber.counters.requests


def test_long_poll_wakes_when_an_event_is_posted(service):
    post_after_s = 0.3
    event = new_event("order.ready", "order-7", producer="test")

    def post() -> None:
        with HttpPublisher(service.url, timeout_s=2.0) as publisher:
            publisher.publish(event)

    timer = threading.Timer(post_after_s, post)
    with LongPollingSubscriber(service.url, wait_s=5.0) as subscriber:
        started = time.monotonic()
        timer.start()
        deliveries = subscriber.receive(5.0)
        elapsed_s = time.monotonic() - started
    timer.join(2.0)
    assert [d.event for d in deliveries] == [event]
    # Woken by the post, not by the 5 s wait ending.
    assert post_after_s * 0.9 <= elapsed_s < post_after_s + 1.5
    assert subscriber.counters.requests == 1
    assert subscriber.counters.empty_responses == 0


def test_sse_receive_returns_promptly_when_nothing_arrives(service):
    with SseSubscriber(service.url) as subscriber:
        started = time.monotonic()
        assert subscriber.receive(0.2) == []
        elapsed_s = time.monotonic() - started
        assert _stats(service)["sse_open"] == 1
        close_started = time.monotonic()
    assert 0.15 <= elapsed_s < 0.6
    assert time.monotonic() - close_started < 1.0
    deadline = time.monotonic() + 2.0  # the server notices the hang-up asynchronously
    while _stats(service)["sse_open"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _stats(service)["sse_open"] == 0


def _wait_for_webhook_stats(service: BackgroundServer, url: str, settled) -> dict:
    deadline = time.monotonic() + COLLECT_TIMEOUT_S
    while True:
        stats = _stats(service)["webhooks"][url]
        if settled(stats) or time.monotonic() > deadline:
            return stats
        time.sleep(0.02)


def test_dead_webhook_fails_while_live_one_gets_everything(service):
    dead_url = f"http://127.0.0.1:{_free_port()}/hook"  # nothing listens there
    response = httpx.post(
        service.url + "/subscriptions", json={"url": dead_url, "retries": 0, "timeout_s": 0.5}, timeout=2.0
    )
    assert response.status_code == 201
    with WebhookSubscriber(service.url, retries=0) as live:
        events = _publish(service)
        deliveries = _collect(live, N_EVENTS)
        dead = _wait_for_webhook_stats(service, dead_url, lambda s: s["failed"] == N_EVENTS)
        alive = _stats(service)["webhooks"][live.hook_url]
    _assert_all_in_order(deliveries, events)
    assert dead == {"ok": 0, "failed": N_EVENTS, "retried": 0, "queued": 0}
    assert alive["ok"] == N_EVENTS and alive["failed"] == 0
    assert live.hook_url not in _stats(service)["webhooks"]  # close() unsubscribed


def test_webhook_retries_a_failing_receiver(service):
    received, seen_ids = [], set()

    def flaky(delivery):
        # Fails (HTTP 500) the first time it sees each event, accepts the retry.
        if delivery.event.id not in seen_ids:
            seen_ids.add(delivery.event.id)
            raise RuntimeError("simulated receiver failure")
        received.append(delivery)

    n_events = 5
    with BackgroundServer(webhook_receiver_app(flaky)) as receiver:
        hook_url = receiver.url + "/hook"
        response = httpx.post(
            service.url + "/subscriptions",
            json={"url": hook_url, "retries": 1, "timeout_s": 1.0},
            timeout=2.0,
        )
        assert response.status_code == 201
        events = _publish(service, n_events)
        stats = _wait_for_webhook_stats(service, hook_url, lambda s: s["ok"] + s["failed"] == n_events)
    assert stats == {"ok": n_events, "failed": 0, "retried": n_events, "queued": 0}
    assert [d.event for d in received] == events


def test_order_lookup_answers_the_latest_status():
    app = event_service_app(extra_routes=[order_status_route])
    with BackgroundServer(app) as service:
        with HttpPublisher(service.url, timeout_s=2.0) as publisher:
            publisher.publish(new_event("order.placed", "42", producer="test"))
            publisher.publish(new_event("order.ready", "42", producer="test"))
            assert publisher.last_position == 1
        found = httpx.get(service.url + "/orders/42", timeout=2.0)
        assert found.status_code == 200
        assert found.json()["status"] == "order.ready"
        assert found.json()["position"] == 1
        missing = httpx.get(service.url + "/orders/nope", timeout=2.0)
        assert missing.status_code == 404
        assert missing.json()["status"] == "unknown"
        assert _stats(service)["requests"]["orders_lookups"] == 2


def test_the_generic_event_service_has_no_restaurant_route(service):
    assert httpx.get(service.url + "/orders/42", timeout=2.0).status_code == 404
    assert "orders_lookups" not in _stats(service)["requests"]


def test_event_service_spec_capabilities_match_behaviour(service):
    """Reading modes keep a position in the in-memory log: durable and replayable;
    a webhook gets only what is posted while it is registered and cannot replay."""
    events = _publish(service, 5)  # nobody subscribed yet
    for mode in ("poll", "long-poll", "sse"):
        spec = EventServiceSpec(service.url, mode=mode, poll_interval_s=0.05)
        assert spec.capabilities.durable and spec.capabilities.replay
        assert not spec.capabilities.groups
        with spec.replayer("beginning") as reader:
            assert [d.event for d in _collect(reader, 5)] == events
        with spec.replayer(3) as reader:
            assert [d.event for d in _collect(reader, 2)] == events[3:]
        with spec.subscriber() as live:  # after=None: only what comes from now on
            live.wait_ready(1.0)
            assert live.receive(0.2) == []
            live.commit()  # nothing to hand back over HTTP; must not fail
            assert live.take_over_pending() == []
    webhook = EventServiceSpec(service.url, mode="webhook")
    assert not webhook.capabilities.durable and not webhook.capabilities.replay
    with pytest.raises(ExperimentError, match="webhook"):
        webhook.replayer("beginning")
    with webhook.subscriber() as hook:
        assert hook.receive(0.5) == []  # events posted before the subscription never come
        later = _publish(service, 2)
        assert [d.event for d in _collect(hook, 2)] == later


def test_stop_is_prompt_with_open_stream_and_long_poll():
    server = BackgroundServer(event_service_app()).start()
    stream = SseSubscriber(server.url)
    poller = LongPollingSubscriber(server.url, wait_s=30.0)
    waiting = threading.Thread(target=lambda: _swallow(poller.receive, 10.0))
    waiting.start()
    time.sleep(0.1)  # let the long poll reach the service
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 1.5
    waiting.join(2.0)
    assert not waiting.is_alive()
    stream.close()
    poller.close()


def _swallow(receive, timeout_s: float) -> None:
    try:
        receive(timeout_s)
    except ServiceUnavailable:
        pass  # expected once the service is gone


def test_publisher_to_dead_service_raises_service_unavailable():
    url = f"http://127.0.0.1:{_free_port()}"
    with (
        HttpPublisher(url, timeout_s=1.0) as publisher,
        pytest.raises(ServiceUnavailable, match="not answering"),
    ):
        publisher.publish(new_event("order.placed", "1"))
    with pytest.raises(ServiceUnavailable):
        SseSubscriber(url, connect_timeout_s=1.0)


def test_servers_listen_on_loopback_only_and_report_taken_ports(service):
    with pytest.raises(ConfigError):
        BackgroundServer(event_service_app(), host="0.0.0.0")
    with pytest.raises(PortInUse):
        BackgroundServer(event_service_app(), port=service.port).start()
