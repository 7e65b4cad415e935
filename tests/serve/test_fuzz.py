"""A short schemathesis run against /openapi.json: no generated request gets a 5xx. Uses the
digits model with tiny step caps so it stays fast."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed (pip install schemathesis)")
from hypothesis import HealthCheck, settings  # noqa: E402

from genimage.serve.app import create_app  # noqa: E402
from genimage.serve.guard import AccessPolicy  # noqa: E402
from genimage.serve.limits import Limits  # noqa: E402
from genimage.serve.studio import Studio  # noqa: E402

_app = create_app(Studio("digits", "cpu", limits=Limits(max_images=2, max_steps=3, max_nfe=6, max_seconds=5,
                                                        queue_size=4)),
                  AccessPolicy(frozenset({"testserver"})))
schema = schemathesis.openapi.from_asgi("/openapi.json", _app)


@schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_no_request_gets_a_5xx(case):
    res = case.call(headers={"X-Genimage": "1"})
    assert res.status_code < 500, f"{case.method} {case.path}: {res.status_code} {res.text[:300]}"
    if res.status_code >= 400:
        assert "error" in res.json() and b"<" not in res.content
