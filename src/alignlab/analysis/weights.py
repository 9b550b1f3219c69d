"""Weight-space analysis: what alignment (and its reversal) did to each weight matrix.

For each weight matrix, ΔW = W_aligned − W_base: its singular-value spectrum, its effective rank
(Roy & Vetterli 2007: exp of the Shannon entropy of the singular values normalised to sum 1)
and the share of its energy (squared Frobenius norm) in the top-k singular directions; is
alignment low-rank? Then the cosine between −ΔW and the reversal update ΔW′ = W_unaligned −
W_aligned, per matrix, per layer and over all weights at once; does the reversal travel back
the way alignment came (cosine near 1) or reach base-like behaviour by another route (near 0)?

Models are model folders / run folders / hub names, loaded modules or name -> tensor dicts.
3-D parameters (a MoE's stacked experts) count as one matrix per expert, named `name[e]`.
"""
from __future__ import annotations

import math
import re

import torch

_LAYER = re.compile(r"\.(\d+)\.")


def _weights(model) -> dict[str, torch.Tensor]:
    if isinstance(model, dict):  # already name -> matrix
        return model
    if isinstance(model, torch.nn.Module):
        named = model.named_parameters()  # tied weights appear once
    else:
        from ..models import load_model

        named = load_model(str(model)).named_parameters()
    out = {}
    for name, p in named:
        p = p.detach().float()
        if p.ndim == 2:
            out[name] = p
        elif p.ndim == 3:
            out.update({f"{name}[{e}]": p[e] for e in range(p.shape[0])})
    return out


def weight_deltas(base, aligned, changed_only: bool = True) -> dict[str, torch.Tensor]:
    """name -> W_aligned − W_base for every matrix the two models share (by default only the changed ones)."""
    a, b = _weights(base), _weights(aligned)
    deltas = {k: b[k] - a[k] for k in a if k in b and a[k].shape == b[k].shape}
    return {k: d for k, d in deltas.items() if not changed_only or bool(d.any())}


def spectrum_stats(delta: torch.Tensor, ks=(1, 4, 16)) -> dict:
    """Singular values, effective rank and the energy fraction in the top-k directions of one matrix."""
    s = torch.linalg.svdvals(delta.double())
    energy = (s ** 2).sum().item()
    out = {"shape": list(delta.shape), "singular_values": s.tolist(), "frobenius": math.sqrt(energy)}
    if energy == 0:
        return {**out, "effective_rank": 0.0, **{f"energy_top{k}": 0.0 for k in ks}}
    p = s / s.sum()
    p = p[p > 0]
    return {**out, "effective_rank": math.exp(-(p * p.log()).sum().item()),
            **{f"energy_top{k}": min(1.0, (s[:k] ** 2).sum().item() / energy) for k in ks}}


def _cos(dot: float, n1: float, n2: float) -> float | None:
    return max(-1.0, min(1.0, dot / math.sqrt(n1 * n2))) if n1 > 0 and n2 > 0 else None


def layer_of(name: str) -> int | None:
    m = _LAYER.search(name)
    return int(m.group(1)) if m else None


def update_cosine(delta_align: dict, delta_reverse: dict) -> dict:
    """cos(−ΔW, ΔW′) per matrix (where both changed), per layer and overall (all weights concatenated;
    a matrix only one update touched counts as zero in the other)."""
    per_matrix, layers = {}, {}
    dot_all = norm_a = norm_r = 0.0
    for name in sorted(set(delta_align) | set(delta_reverse)):
        a, r = delta_align.get(name), delta_reverse.get(name)
        na = (a.double() ** 2).sum().item() if a is not None else 0.0
        nr = (r.double() ** 2).sum().item() if r is not None else 0.0
        dot = -(a.double() * r.double()).sum().item() if a is not None and r is not None else 0.0
        dot_all, norm_a, norm_r = dot_all + dot, norm_a + na, norm_r + nr
        if (c := _cos(dot, na, nr)) is not None:
            per_matrix[name] = c
        acc = layers.setdefault(layer_of(name), [0.0, 0.0, 0.0])
        acc[0], acc[1], acc[2] = acc[0] + dot, acc[1] + na, acc[2] + nr
    per_layer = {k: c for k, v in layers.items() if k is not None and (c := _cos(*v)) is not None}
    return {"overall": _cos(dot_all, norm_a, norm_r), "per_layer": dict(sorted(per_layer.items())),
            "per_matrix": per_matrix}


def analyze(base, aligned, unaligned=None, ks=(1, 4, 16)) -> dict:
    """Spectrum stats of every changed matrix of alignment (and of the reversal), and their cosines."""
    aligned = _weights(aligned)  # loaded once, used twice
    align = weight_deltas(base, aligned)
    out = {"alignment": {k: spectrum_stats(d, ks) for k, d in align.items()}}
    if unaligned is not None:
        reverse = weight_deltas(aligned, unaligned)
        out["reversal"] = {k: spectrum_stats(d, ks) for k, d in reverse.items()}
        out["cosine"] = update_cosine(align, reverse)
    return out


def plot_spectra(stats: dict[str, dict], top: int = 6, title: str = "ΔW singular values"):
    """Normalised singular values (σ_i / σ_1) of the `top` matrices with the largest updates."""
    from ..report import plt  # the Agg backend is chosen there

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, s in sorted(stats.items(), key=lambda kv: -kv[1]["frobenius"])[:top]:
        sv = [v for v in s["singular_values"] if v > 0]
        if sv:
            ax.semilogy(range(1, len(sv) + 1), [v / sv[0] for v in sv], marker=".", label=f"{name} "
                        f"(erank {s['effective_rank']:.1f})")
    ax.set(xlabel="index i", ylabel="σ_i / σ_1", title=title)
    ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


def plot_cosine_per_layer(cosine: dict, title: str = "cos(−ΔW_align, ΔW_reverse) per layer"):
    from ..report import plt  # the Agg backend is chosen there

    fig, ax = plt.subplots(figsize=(6, 3.2))
    layers = list(cosine["per_layer"])
    ax.bar([str(k) for k in layers], [cosine["per_layer"][k] for k in layers], color="#1565c0")
    ax.axhline(0, color="#888", lw=0.8)
    ax.set(xlabel="layer", ylabel="cosine", ylim=(-1, 1), title=title)
    fig.tight_layout()
    return fig
