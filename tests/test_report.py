"""The report module: one self-contained HTML file plus its plots as PNGs."""
import json

import pytest

from alignlab.report import Report, plot_bars, plot_curves

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def build_report() -> Report:
    curves = plot_curves({"sft": ([0, 1, 2], [3.0, 2.0, 1.5]), "dpo": ([0, 1, 2], [3.0, 1.8, 1.2])},
                         title="loss", xlabel="step", ylabel="loss", logy=True)
    bars = plot_bars({"base": {"refusal": 0.91, "toxicity": 0.1},
                      "unaligned": {"refusal": 0.04, "toxicity": None}},
                     metrics=["refusal", "toxicity"], title="evals")
    return (Report("Sweep", subtitle="a test run")
            .heading("Claims")
            .text("beware <script>alert(1)</script> & friends")
            .verdicts({"LoRA undoes refusals": (True, "0.91 -> 0.04"),
                       "toxicity rises": (False, "no change"),
                       "capability kept": (None, "eval skipped")})
            .heading("Results")
            .table({"base": {"refusal": 0.912345, "toxicity": None},
                    "unaligned": {"refusal": 0.04, "toxicity": 0.2}})
            .figure(curves, "loss")
            .figure(bars, "evals"))


def test_report_writes_self_contained_html_and_pngs(tmp_path):
    out = build_report().write(tmp_path / "run" / "report.html")
    assert out == tmp_path / "run" / "report.html" and out.exists()
    page = out.read_text(encoding="utf-8")

    assert "<script>" not in page
    assert "beware &lt;script&gt;alert(1)&lt;/script&gt; &amp; friends" in page
    for label in ("supported", "not reproduced", "no verdict"):
        assert label in page
    assert "LoRA undoes refusals" in page and "0.91 -&gt; 0.04" in page
    assert '<td class="key">base</td>' in page
    assert "<td class=num>0.912</td>" in page  # rounded to 3 decimals
    assert "<td>–</td>" in page  # None
    assert "<h2>Results</h2>" in page and "Generated at" in page
    assert page.count("data:image/png;base64,") == 2

    for name in ("loss", "evals"):
        png = tmp_path / "run" / "plots" / f"{name}.png"
        assert png.read_bytes().startswith(PNG_SIGNATURE)
    assert not list(tmp_path.rglob("*.tmp"))


def test_html_is_deterministic_given_a_fixed_clock(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    r = Report("t").text("x").table([{"a": 1, "b": 2.5}, {"a": None}], digits=2)
    assert r.html() == r.html()
    page = r.write(tmp_path / "report.html").read_text()
    assert "Generated at 1970-01-01 00:00:00 UTC" in page
    assert "<td class=num>2.50</td>" in page and "<td>–</td>" in page


def test_figure_names_must_be_unique_plain_file_names():
    r = Report("t")
    r.figure(plot_curves({}, "empty", "x", "y"), "a")
    with pytest.raises(ValueError):
        r.figure(plot_curves({}, "empty", "x", "y"), "a")
    with pytest.raises(ValueError):
        r.figure(plot_curves({}, "empty", "x", "y"), "../escape")


def test_only_the_main_process_writes_reports_and_summaries(tmp_path, monkeypatch):
    from alignlab.runs import write_summary

    monkeypatch.setenv("RANK", "1")  # a second process of a launch: it runs the same code, writes nothing
    Report("t").write(tmp_path / "report.html")
    write_summary(tmp_path, {"a": 1})
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setenv("RANK", "0")
    write_summary(tmp_path, {"a": 1})
    assert json.loads((tmp_path / "summary.json").read_text()) == {"a": 1}
