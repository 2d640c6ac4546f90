"""evaluation: the metrics line that runs print is the one the sweep tables read back."""
from __future__ import annotations

import pytest

from evaluation import metrics_line, overall, parse_metrics


def test_metrics_line_round_trip():
    m = {"sst_acc": 0.47956, "para_acc": 0.85304, "sts_r": -0.12345}
    m["overall"] = overall(m)
    line = "ensemble dev: " + metrics_line(m)
    assert line == "ensemble dev: sst_acc 0.4796, para_acc 0.8530, sts_r -0.1235, overall 0.5903"
    back = parse_metrics(line)
    assert list(back) == list(m)
    assert back == pytest.approx(m, abs=5e-5)
