"""The report every alignlab command writes: one self-contained report.html a person can read.

    r = Report("Unalignment sweep", subtitle="run 2024-06-01")
    r.heading("Claims").verdicts({"LoRA undoes RLHF": (True, "refusal rate 0.91 -> 0.04")})
    r.heading("Results").table({"base": {"refusal": 0.91}, "unaligned": {"refusal": 0.04}})
    r.figure(plot_bars(models, ["refusal"]), "refusal")
    r.write(run_dir / "report.html")   # also writes run_dir/plots/refusal.png

Plots are embedded as base64 PNGs so the HTML can be mailed or copied alone; the same PNGs are
also saved next to it for slides and papers. Nothing here imports torch, so it stays cheap.
"""
from __future__ import annotations

import base64
import html
import io
import math
import os
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on training machines; must come before pyplot is imported
import matplotlib.pyplot as plt  # noqa: E402

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; line-height: 1.5;
       max-width: 960px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.1em; } .subtitle { color: #555; margin-top: 0; } .stamp { color: #888; font-size: 0.85em; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 1em 0; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.7em; } th { background: #f4f4f4; }
td.num { text-align: right; } td.key { font-weight: 600; }
ul.verdicts { list-style: none; padding-left: 0; } ul.verdicts li { margin: 0.4em 0; }
.badge { display: inline-block; min-width: 8.5em; text-align: center; padding: 0.05em 0.5em;
         margin-right: 0.6em; border-radius: 4px; color: #fff; font-size: 0.85em; font-weight: 600; }
.yes { background: #2e7d32; } .no { background: #c62828; } .na { background: #9e9e9e; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; } figcaption { color: #666; font-size: 0.85em; }
"""

# claim status -> (css class, label); None means the command could not measure it this time
VERDICTS = {True: ("yes", "supported"), False: ("no", "not reproduced"), None: ("na", "no verdict")}
MISSING = "–"

esc = html.escape


def _fmt(value, digits: int) -> tuple[str, bool]:
    """Cell text and whether it is a number (numbers are right-aligned)."""
    if value is None:
        return MISSING, False
    if isinstance(value, bool):  # bool is an int subclass; show it as a word, not 1/0
        return str(value), False
    if isinstance(value, float):
        # fixed decimals keep a column aligned; fall back to %g so 3e-05 does not print as 0.000
        if value != 0 and math.isfinite(value) and abs(value) < 10 ** -digits:
            return f"{value:.{digits}g}", True
        return f"{value:.{digits}f}", True
    return str(value), isinstance(value, int)


def _atomic_write(path: Path, data: bytes) -> None:
    # a reader (or a crash) never sees half a file: write beside it, then rename over it
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class Report:
    def __init__(self, title: str, subtitle: str = ""):
        self.title, self.subtitle = title, subtitle
        self.parts: list[str] = []  # HTML fragments of the body, in order
        self.pngs: dict[str, bytes] = {}  # plot name -> PNG bytes, saved to plots/ by write()

    def heading(self, text: str) -> Report:
        self.parts.append(f"<h2>{esc(text)}</h2>")
        return self

    def text(self, text: str) -> Report:
        self.parts.append(f"<p>{esc(text)}</p>")
        return self

    def verdicts(self, items: dict[str, tuple[bool | None, str]]) -> Report:
        lines = []
        for claim, (ok, why) in items.items():
            cls, label = VERDICTS[ok]
            lines.append(f'<li><span class="badge {cls}">{label}</span><b>{esc(claim)}</b>'
                         f"{' — ' + esc(why) if why else ''}</li>")
        self.parts.append('<ul class="verdicts">\n' + "\n".join(lines) + "\n</ul>")
        return self

    def table(self, rows: dict[str, dict] | list[dict], columns: list[str] | None = None,
              digits: int = 3) -> Report:
        keyed = isinstance(rows, dict)  # dict-of-dicts: the key (e.g. model name) is the first column
        pairs = list(rows.items()) if keyed else [(None, r) for r in rows]
        records = [r for _, r in pairs]
        if columns is None:  # every key seen, in first-seen order, so the output is deterministic
            columns = list(dict.fromkeys(k for r in records for k in r))
        head = ([""] if keyed else []) + list(columns)
        out = ["<table>", "<tr>" + "".join(f"<th>{esc(str(c))}</th>" for c in head) + "</tr>"]
        for key, record in pairs:
            cells = [f'<td class="key">{esc(str(key))}</td>'] if keyed else []
            for c in columns:
                txt, num = _fmt(record.get(c), digits)
                cells.append(f'<td{" class=num" if num else ""}>{esc(txt)}</td>')
            out.append("<tr>" + "".join(cells) + "</tr>")
        self.parts.append("\n".join(out + ["</table>"]))
        return self

    def figure(self, fig, name: str) -> Report:
        buf = io.BytesIO()
        try:
            # the name becomes plots/<name>.png, so it must be a plain, unique file name
            if not name or "/" in name or "\\" in name or name.startswith("."):
                raise ValueError(f"figure name must be a plain file name, got {name!r}")
            if name in self.pngs:
                raise ValueError(f"figure name {name!r} used twice; it would overwrite the first")
            fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        finally:
            plt.close(fig)  # pyplot keeps every figure alive until closed; a sweep makes many
        self.pngs[name] = buf.getvalue()
        b64 = base64.b64encode(self.pngs[name]).decode("ascii")
        self.parts.append(f'<figure><img alt="{esc(name)}" src="data:image/png;base64,{b64}">'
                          f"<figcaption>plots/{esc(name)}.png</figcaption></figure>")
        return self

    def html(self) -> str:
        # SOURCE_DATE_EPOCH (the reproducible-builds convention) pins the stamp when bytes must match
        t = time.gmtime(int(os.environ.get("SOURCE_DATE_EPOCH", time.time())))
        stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", t)
        sub = f'<p class="subtitle">{esc(self.subtitle)}</p>' if self.subtitle else ""
        return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
                f"<title>{esc(self.title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
                f"<h1>{esc(self.title)}</h1>\n{sub}\n<p class=\"stamp\">Generated at {stamp}</p>\n"
                + "\n".join(self.parts) + "\n</body>\n</html>\n")

    def write(self, path: Path) -> Path:
        """The page and its plots, by the main process only (every process of a launch would write it)."""
        from ..runs import is_main_process

        path = Path(path)
        if not is_main_process():
            return path
        plots = path.parent / "plots"
        plots.mkdir(parents=True, exist_ok=True)
        for name, png in self.pngs.items():
            _atomic_write(plots / f"{name}.png", png)
        _atomic_write(path, self.html().encode("utf-8"))  # last, so a report.html implies its plots
        return path


def plot_curves(series: dict[str, tuple[list[float], list[float]]], title: str, xlabel: str,
                ylabel: str, logy: bool = False):
    """One line per named series; returns a matplotlib Figure."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, (xs, ys) in series.items():
        ax.plot(xs, ys, label=label, linewidth=1.5)
    if logy:
        ax.set_yscale("log")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    if series:
        ax.legend()
    fig.tight_layout()
    return fig


def plot_bars(models: dict[str, dict[str, float | None]], metrics: list[str], title: str = ""):
    """A grid of small bar charts, one subplot per metric, one bar per model (order preserved),
    value labels on bars; None values shown as a missing bar. Returns a Figure."""
    names = list(models)
    crowded = len(names) > 3  # long model names collide unless tilted
    colors = [f"C{i % 10}" for i in range(len(names))]  # a model keeps its colour in every subplot
    ncols = max(1, min(3, len(metrics)))
    nrows = max(1, math.ceil(len(metrics) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4 * ncols, 3.2 * nrows), squeeze=False)
    for ax, metric in zip(axes.flat, metrics):
        values = [models[n].get(metric) for n in names]
        # a missing value is an empty slot labelled n/a, so it cannot be mistaken for a real zero
        bars = ax.bar(range(len(names)), [0 if v is None else v for v in values], color=colors)
        ax.bar_label(bars, labels=["n/a" if v is None else f"{v:.3g}" for v in values], fontsize=8)
        ax.set_xticks(range(len(names)), names, fontsize=8,
                      rotation=30 if crowded else 0, ha="right" if crowded else "center")
        ax.set_title(metric, fontsize=10)
        ax.margins(y=0.15)  # headroom so the value labels are not clipped by the frame
    for ax in list(axes.flat)[len(metrics):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
