"""The client layer's own rules: one reconnect on a dropped Milvus channel, and nothing else retried."""

from __future__ import annotations

import grpc
import pytest
from pymilvus.exceptions import MilvusException

from docbot_lib.clients import milvus
from docbot_lib.core.errors import NotReachable


class _Unavailable(grpc.RpcError):
    def code(self):
        return grpc.StatusCode.UNAVAILABLE


def _failing(*errors):
    """A call that raises each of `errors` in turn, then answers "ok"; it counts its calls."""
    calls = []

    def call():
        calls.append(1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return "ok"

    return call, calls


@pytest.mark.parametrize(
    "error",
    [
        MilvusException(message="Fail connecting to server on 127.0.0.1:19530, illegal connection params"),
        _Unavailable(),
    ],
)
def test_a_dropped_channel_is_reopened_once(error):
    call, calls = _failing(error)
    dropped = []
    assert milvus.reconnecting(call, on_drop=lambda: dropped.append(1)) == "ok"
    assert len(calls) == 2 and dropped == [1]


def test_a_second_drop_raises():
    error = MilvusException(message="Fail connecting to server")
    call, calls = _failing(error, error)
    with pytest.raises(MilvusException):
        milvus.reconnecting(call)
    assert len(calls) == 2


@pytest.mark.parametrize(
    "error",
    [
        MilvusException(message="collection not found[collection=docbot]"),
        NotReachable("Milvus does not answer", "start it", service="milvus"),
        ValueError("a bug"),
    ],
)
def test_anything_else_is_not_retried(error):
    call, calls = _failing(error)
    dropped = []
    with pytest.raises(type(error)):
        milvus.reconnecting(call, on_drop=lambda: dropped.append(1))
    assert len(calls) == 1 and dropped == []
