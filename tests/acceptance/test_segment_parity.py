"""``check-config --try`` (the real command) shows how an event was read as Segment reads it (SPEC section 13):
the corrected timestamp and the alias that decided each field."""

from __future__ import annotations

import json
from pathlib import Path

from tests.acceptance.test_serve import example_env, run_cli
from tests.processes import ROOT


def test_check_config_try_shows_the_corrected_timestamp_and_the_deciding_aliases(tmp_path: Path) -> None:
    event = {"type": "track", "event": "order_completed", "userId": "u1", "timestamp": "2024-05-01 10:00:00+00",
             "sentAt": "2024-05-01 10:05:00+00",
             "properties": {"orderId": "ORD-1001", "revenue": "39.98",
                            "products": [{"productId": "p1", "name": "Mug", "price": "19.99", "quantity": "2"}]}}
    path = tmp_path / "order.json"
    path.write_text(json.dumps(event))
    done = run_cli("check-config", "--config", str(ROOT / "config.example.toml"), "--try", str(path),
                   env=example_env(tmp_path, 8787, "http://x", "http://y"))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "POST /api/commerce/trackPurchase" in out and '"id": "ORD-1001"' in out and '"total": 39.98' in out
    assert "(sentAt 2024-05-01T10:05:00+00:00 - originalTimestamp 2024-05-01T10:00:00+00:00) (device clock " \
           "corrected)" in out
    for line in ("event 'order_completed' read as Segment's 'Order Completed'", "id from properties.orderId",
                 "total from properties.revenue", "items[0].id from properties.products[0].productId"):
        assert line in out.splitlines()
