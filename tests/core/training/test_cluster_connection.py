"""A Ray connection that fails says what to check: the address, Ray's client extra, and Ray's
token authentication (whose refusal shows only in the head's log)."""

from __future__ import annotations

import types

import pytest

from visualizer.core.training.cluster import ClusterError, _init, parse_cluster


def fake_ray(error: BaseException) -> types.SimpleNamespace:
    def init(*args, **kwargs):
        raise error

    return types.SimpleNamespace(init=init)


@pytest.mark.parametrize("where", ["ray://10.0.0.5:10001", "auto"])
def test_an_unreachable_cluster_names_the_three_things_to_check(where):
    ray = fake_ray(ConnectionError("Failed to connect to GCS within 60 seconds."))
    with pytest.raises(ClusterError) as info:
        _init(ray, parse_cluster(where))
    text = str(info.value)
    assert len(text.splitlines()) == 1
    assert text.startswith(f"cannot reach the Ray cluster {where}: Failed to connect to GCS within 60 seconds;")
    assert "address" in text
    assert "pip install 'ray[client]'" in text
    assert "token authentication" in text and "RAY_AUTH_TOKEN" in text


def test_a_local_start_failure_has_no_remote_checklist():
    with pytest.raises(ClusterError) as info:
        _init(fake_ray(RuntimeError("not enough shared memory")), parse_cluster("local:2"))
    assert str(info.value) == "cannot reach the Ray cluster local:2: not enough shared memory"
