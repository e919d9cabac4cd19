"""Ingested.mark_last_done: the batch's last result becomes done=True in the dict and
in its rendered result.json line and progress.csv row, byte for byte what rendering
it with done=True gives, identically in both cores."""
import csv
import io
import json

import pytest

import fasttune._core as compiled
import fasttune._core_fallback as twin

IMPLEMENTATIONS = (compiled, twin)
CONFIG = '{"lr": 0.1, "name": "\\u00e9"}'


def flatten(d, prefix=""):
    out = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}/"))
        else:
            out[prefix + key] = value
    return out


def rendered_json_line(result):
    return (json.dumps(result, default=str)[:-1] + ', "config": ' + CONFIG + "}\n").encode()


def rendered_csv_row(result, header):
    text = io.StringIO()
    csv.DictWriter(text, fieldnames=header, extrasaction="ignore").writerow(flatten(result))
    return text.getvalue().encode("utf-8", "backslashreplace")


def ingest(core, batch, stop=None, header=None, metric=None):
    table = core.TrialTable("min")
    row = table.add()
    buf = core.ResultBuffer(table, metric)
    if header is not None:
        buf.set_csv_header(row, header)
    buf.open_trial(row, "t_00001", CONFIG, stop, start_time=1.7e9, hostname="host",
                   node_ip="10.0.0.1", pid=42)
    out = buf.ingest(row, batch, [1.7e9 + 1.5 * (i + 1) for i in range(len(batch))])
    return buf, row, out


def marked(batch, **kwargs):
    """Each core's batch after mark_last_done; checks they agree and returns one."""
    outs = []
    for core in IMPLEMENTATIONS:
        buf, row, out = ingest(core, batch, **kwargs)
        before_json, before_csv = out.json_bytes, out.csv_bytes
        out.mark_last_done()
        assert out.results[-1]["done"] is True
        assert buf.last_result(row) is out.results[-1]
        # Every line but the last is untouched.
        assert out.json_bytes.splitlines()[:-1] == before_json.splitlines()[:-1]
        outs.append((out, buf.csv_header(row), before_csv))
    (a, header, _), (b, _, _) = outs
    assert (a.json_bytes, a.csv_bytes) == (b.json_bytes, b.csv_bytes)
    assert a.results == b.results
    return outs[1]


CASES = {
    "batch of one": [{"loss": 0.5}],
    "batch of three": [{"loss": 3.0}, {"loss": 2.0}, {"loss": 1.25e-7, "step": 3}],
    "nested keys": [{"loss": 1.0, "val": {"acc": 0.5, "done": False, "deep": {"x": "a,b"}}},
                    {"loss": 0.5, "val": {"acc": 0.7, "done": False, "deep": {"x": 'q"\n'}}}],
    "no user keys": [{}, {}],
    "quoting and non-ASCII": [{"name": "a,b", "é": "ü€", "t": "line\r\nbreak"}],
    "user sets done": [{"loss": 1.0, "done": False}, {"done": 0, "loss": 2.0}],
    "user sets an automatic field": [{"loss": 1.0, "timestamp": 5, "date": "today"}],
    "lists and odd values": [{"h": [1, 2.5, None], "n": None, "o": object, "b": True}],
}


@pytest.mark.parametrize("batch", CASES.values(), ids=CASES.keys())
def test_marked_bytes_are_the_rendering_with_done_true(batch):
    out, header, csv_before = marked(batch)
    last = out.results[-1]
    assert out.json_bytes.endswith(rendered_json_line(last))
    assert json.loads(out.json_bytes.splitlines()[-1])["done"] is True
    assert "done" in header
    assert out.csv_bytes.endswith(rendered_csv_row(last, header))
    rows = list(csv.DictReader(io.StringIO(out.csv_bytes.decode())))
    assert rows[-1]["done"] == "True"
    assert [r["done"] for r in rows[:-1]] == [str(flatten(r).get("done", "")) for r in out.results[:-1]]


def test_only_the_last_result_changes():
    out, _, csv_before = marked([{"loss": 1.0}, {"loss": 0.5}, {"loss": 0.25}])
    assert [r["done"] for r in out.results] == [False, False, True]
    lines = out.json_bytes.splitlines()
    assert [json.loads(line)["done"] for line in lines] == [False, False, True]
    assert out.csv_bytes.splitlines()[:-1] == csv_before.splitlines()[:-1]


@pytest.mark.parametrize("header", [["loss", "training_iteration"], ["loss", "missing"]])
def test_a_csv_header_without_done_leaves_the_csv_as_it_is(header):
    out, got_header, csv_before = marked([{"loss": 1.0}, {"loss": 0.5}], header=header)
    assert got_header == header
    assert out.csv_bytes == csv_before
    assert out.json_bytes.endswith(rendered_json_line(out.results[-1]))


@pytest.mark.parametrize("header", [["done"], ["done", "loss"], ["loss", "done"],
                                    ["s", "done", "pid"]])
def test_a_resumed_csv_header_with_done_anywhere(header):
    batch = [{"loss": 1.0, "s": "x,\ud800"}, {"loss": 0.5, "s": "é\ud800"}]
    out, got_header, _ = marked(batch, header=header)
    assert out.csv_bytes.endswith(rendered_csv_row(out.results[-1], header))


def test_a_lone_empty_done_column():
    # A falsy dict as "done" leaves the column empty: the csv module writes '""'.
    out, _, csv_before = marked([{"done": {}}], header=["done"])
    assert csv_before == b'""\r\n' and out.csv_bytes == b"True\r\n"


def test_a_result_that_stopped_is_already_rendered_done():
    for core in IMPLEMENTATIONS:
        _, _, out = ingest(core, [{"loss": 1.0}, {"loss": 0.5}, {"loss": 0.1}],
                           stop={"training_iteration": 2})
        assert out.stopped and len(out.results) == 2
        before = (out.json_bytes, out.csv_bytes)
        out.mark_last_done()
        assert (out.json_bytes, out.csv_bytes) == before


def test_after_a_refused_result_the_last_kept_one_is_marked():
    out, header, _ = marked([{"loss": 1.0}, {"loss": 0.5}, {"no_loss": 1}], metric="loss")
    assert out.error is not None and len(out.results) == 2
    assert out.json_bytes.endswith(rendered_json_line(out.results[-1]))
    assert out.csv_bytes.endswith(rendered_csv_row(out.results[-1], header))


def test_marking_twice_changes_nothing_more():
    for core in IMPLEMENTATIONS:
        _, _, out = ingest(core, [{"loss": 1.0}, {"loss": 0.5}])
        out.mark_last_done()
        once = (out.json_bytes, out.csv_bytes)
        out.mark_last_done()
        assert (out.json_bytes, out.csv_bytes) == once


def test_an_empty_batch_has_nothing_to_mark():
    messages = set()
    for core in IMPLEMENTATIONS:
        _, _, out = ingest(core, [])
        with pytest.raises(ValueError) as info:
            out.mark_last_done()
        messages.add(str(info.value))
    assert messages == {"mark_last_done: the batch kept no result"}
