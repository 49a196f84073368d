"""tools/compare_metrics.py: every numeric field of two metrics.json files, by path; text is not compared."""

import json
import math

from compare_metrics import differences, main, numeric_fields


def test_numeric_fields_by_path_and_differences_known_answer():
    before = {"a": {"b": [1, 2.5, True, "x"]}, "c": math.nan, "d": 3}
    assert numeric_fields(before) == {"a.b[0]": 1, "a.b[1]": 2.5, "c": before["c"], "d": 3}
    after = {"a": {"b": [1, 2.5000001, False, "y"]}, "c": math.nan, "e": 4}
    assert differences(before, after) == ["d: only in before", "e: only in after", "a.b[1]: 2.5 -> 2.5000001"]
    assert differences(before, after, tolerance=1e-3) == ["d: only in before", "e: only in after"]


def test_the_command_exits_1_on_any_difference(tmp_path, capsys):
    (tmp_path / "a.json").write_text(json.dumps({"metrics": {"fid": {"value": 12.5}}, "path": "/x"}))
    (tmp_path / "b.json").write_text(json.dumps({"metrics": {"fid": {"value": 12.5}}, "path": "/y"}))
    assert main([str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 0
    (tmp_path / "b.json").write_text(json.dumps({"metrics": {"fid": {"value": 12.6}}}))
    assert main([str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 1
    assert "metrics.fid.value: 12.5 -> 12.6" in capsys.readouterr().out
