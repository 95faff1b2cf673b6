"""The bounded retry policy, without a network: its window, and giving up once for a whole operation."""

from __future__ import annotations

import threading

import pytest
from azure.core.exceptions import ServiceRequestError
from azure.core.pipeline import PipelineContext, PipelineRequest
from azure.core.pipeline.transport import HttpRequest

from modelstore.connection import BoundedRetry

REFUSED = "<urllib3.connection.HTTPConnection object>: Failed to establish a new connection: " \
          "[Errno 111] Connection refused"


class Refusing:
    """The next policy: every request is refused, and counted."""

    def __init__(self) -> None:
        self.sent = 0

    def send(self, request: PipelineRequest) -> None:
        self.sent += 1
        raise ServiceRequestError(REFUSED)


def request() -> PipelineRequest:
    return PipelineRequest(HttpRequest("GET", "http://127.0.0.1:9/devstoreaccount1/m/d/1/model.onnx"),
                           PipelineContext(None))


def in_thread(policy: BoundedRetry) -> BaseException | None:
    """Send from another thread (one of the SDK's range workers), return what it raised."""
    raised: list[BaseException] = []

    def send() -> None:
        try:
            policy.send(request())
        except BaseException as exc:
            raised.append(exc)

    worker = threading.Thread(target=send)
    worker.start()
    worker.join(timeout=60)
    return raised[0] if raised else None


@pytest.fixture
def policy() -> tuple[BoundedRetry, Refusing]:
    retry = BoundedRetry(timeout=0.4)  # back-offs of 10-80 ms: the window is spent within it
    retry.next = Refusing()
    retry.begin()
    return retry, retry.next


def test_an_unreachable_store_is_retried_within_the_window_then_given_up(policy) -> None:
    retry, store = policy
    with pytest.raises(ServiceRequestError, match="Connection refused"):
        retry.send(request())
    assert store.sent > 1, "not retried at all"


def test_once_one_range_gave_up_the_other_ranges_of_the_fetch_fail_at_once(policy) -> None:
    # The SDK's concurrent download goes on requesting its remaining ranges after one failed; each
    # opening its own window made a 200 MiB fetch from a vanished store take minutes.
    retry, store = policy
    with pytest.raises(ServiceRequestError):
        retry.send(request())
    sent = store.sent

    raised = in_thread(retry)

    assert isinstance(raised, ServiceRequestError) and "Connection refused" in str(raised)
    assert store.sent == sent, "a range of a fetch that already gave up was requested again"


def test_the_next_operation_tries_again(policy) -> None:
    retry, store = policy
    with pytest.raises(ServiceRequestError):
        retry.send(request())
    sent = store.sent
    retry.begin()
    with pytest.raises(ServiceRequestError):
        retry.send(request())
    assert store.sent > sent
