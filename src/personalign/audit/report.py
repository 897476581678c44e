"""The aggregation audit's output: audit.json, PNG plots and report.html (the analysis: :mod:`.pipeline`)."""

from __future__ import annotations

import base64
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

# the analysis lives in personalign.audit.pipeline; run_audit and headline stay importable from here
from personalign.audit.pipeline import headline, run_audit
from personalign.data.files import dumps_json, to_jsonable, write_bytes_atomic, write_text_atomic

__all__ = ["headline", "public", "render_html", "run_audit", "write_audit"]


# ------------------------------------------------------------------------------------------------- output
def public(x: Any) -> Any:
    """A copy without the private entries (keys starting with '_': arrays kept for the plots)."""
    if isinstance(x, dict):
        return {k: public(v) for k, v in x.items() if not str(k).startswith("_")}
    if isinstance(x, (list, tuple)):
        return [public(v) for v in x]
    return x


def _plots(res: dict[str, Any], out: Path) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files: dict[str, str] = {}
    # per-person fit histogram
    rep = res["representation"]
    acc, n = rep["_acc"], rep["_n"]
    ok = (n >= 5) & ~np.isnan(acc)
    if ok.any():
        fig, ax = plt.subplots(figsize=(6, 3.6))
        bins = np.linspace(0, 1, 21)
        ax.hist(acc[ok], bins=bins, alpha=0.7, label="aggregated BT")
        if "_macc" in rep:
            ax.hist(
                rep["_macc"][ok], bins=bins, alpha=0.5, label=f"personalized ({rep['personalized']['model']})"
            )
        ax.axvline(0.6, color="crimson", ls="--", lw=1, label="60%")
        ax.set_xlabel("pairwise accuracy on the person's own comparisons")
        ax.set_ylabel("persons")
        ax.set_title("Who the aggregate represents")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "person_fit.png", dpi=90)
        plt.close(fig)
        files["person_fit"] = "person_fit.png"
    # group divergence heatmaps
    cols = [c for c, v in (res.get("groups") or {}).items() if "jsd_between" in v]
    if cols:
        fig, axes = plt.subplots(1, len(cols), figsize=(3.6 * len(cols), 3.4), squeeze=False)
        for ax, c in zip(axes[0], cols, strict=False):
            g = res["groups"][c]
            m = np.array(g["jsd_between"], float)
            im = ax.imshow(m, cmap="viridis", vmin=0)
            ax.set_xticks(range(len(g["names"])))
            ax.set_xticklabels([s[:12] for s in g["names"]], rotation=60, ha="right", fontsize=7)
            ax.set_yticks(range(len(g["names"])))
            ax.set_yticklabels([s[:12] for s in g["names"]], fontsize=7)
            ax.set_title(c, fontsize=9)
            fig.colorbar(im, ax=ax, fraction=0.046)
        fig.suptitle("Mean per-item Jensen-Shannon divergence between groups", fontsize=9)
        fig.tight_layout()
        fig.savefig(out / "group_divergence.png", dpi=90)
        plt.close(fig)
        files["group_divergence"] = "group_divergence.png"
    # majority graph with a cycle drawn
    sc = (res.get("social_choice") or {}).get("main")
    if sc and sc.get("n_items", 0) >= 2:
        S, theta = sc["_support"], sc["_theta"]
        nodes = list(
            dict.fromkeys(sc["_cycle_idx"] + list(np.argsort(-theta)[: max(0, 14 - len(sc["_cycle_idx"]))]))
        )
        nodes = [int(x) for x in nodes]
        k = len(nodes)
        ang = np.linspace(0, 2 * np.pi, k, endpoint=False)
        xy = np.c_[np.cos(ang), np.sin(ang)]
        fig, ax = plt.subplots(figsize=(6, 6))
        cyc = set(zip(sc["_cycle_idx"], sc["_cycle_idx"][1:] + sc["_cycle_idx"][:1], strict=False))
        for p, a in enumerate(nodes):
            for q, b in enumerate(nodes):
                if S[a, b] > S[b, a]:
                    red = (a, b) in cyc
                    ax.annotate(
                        "",
                        xy=xy[q] * 0.92,
                        xytext=xy[p] * 0.92,
                        arrowprops=dict(
                            arrowstyle="-|>",
                            lw=2.2 if red else 0.5,
                            color="crimson" if red else "0.7",
                            alpha=1 if red else 0.6,
                        ),
                    )
        for p, a in enumerate(nodes):
            ax.scatter(*xy[p], s=300, color="crimson" if a in sc["_cycle_idx"] else "steelblue", zorder=3)
            ax.text(*(xy[p] * 1.13), sc["items"][a][-12:], ha="center", va="center", fontsize=7)
        ax.set_xlim(-1.35, 1.35)
        ax.set_ylim(-1.35, 1.35)
        ax.axis("off")
        ax.set_title(
            f"Majority graph ({k} of {sc['n_items']} items: a cycle in red, then the BT top)", fontsize=9
        )
        fig.tight_layout()
        fig.savefig(out / "majority_graph.png", dpi=90)
        plt.close(fig)
        files["majority_graph"] = "majority_graph.png"
    return files


def write_audit(res: dict[str, Any], out: str | Path) -> dict[str, Path]:
    """Write audit.json, the PNG plots and report.html into ``out`` (each file written to a temp path, renamed)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # the plots are drawn in a scratch folder (the HTML embeds them), then every file is written atomically
    with tempfile.TemporaryDirectory(prefix="personalign-audit-") as tmp:
        tmp_p = Path(tmp)
        plots = _plots(res, tmp_p)
        doc = to_jsonable(public({k: v for k, v in res.items() if k != "item_text"}))
        doc["plots"] = plots
        wf = ((res.get("social_choice") or {}).get("main") or {}).get("welfare") or {}
        shown = {c["item"] for c in wf.values() if isinstance(c, dict)}
        doc["item_text"] = {k: v for k, v in res.get("item_text", {}).items() if k in shown}
        written = {"audit.json": write_text_atomic(out / "audit.json", dumps_json(doc, indent=1))}
        html = render_html(doc, {k: tmp_p / v for k, v in plots.items()})
        written["report.html"] = write_text_atomic(out / "report.html", html)
        for name in plots.values():
            written[name] = write_bytes_atomic(out / name, (tmp_p / name).read_bytes())
    return written


def render_html(doc: dict[str, Any], plot_paths: dict[str, Path]) -> str:
    """The report for an auditor (jinja2 template; PNGs embedded as data URIs)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("personalign.audit", "templates"),
        undefined=jinja2.ChainableUndefined,
        autoescape=jinja2.select_autoescape(["html", "j2"]),
    )

    def missing(v: Any) -> bool:
        return v is None or isinstance(v, jinja2.Undefined)

    # comparison data leaves some figures out: they print as n/a
    env.filters["pct"] = lambda v: "n/a" if missing(v) else f"{100 * v:.1f}%"
    env.filters["num"] = lambda v, d=3: (
        "n/a" if missing(v) else (f"{v:.{d}f}" if isinstance(v, float) else str(v))
    )
    imgs = {k: base64.b64encode(p.read_bytes()).decode() for k, p in plot_paths.items()}
    return env.get_template("report.html.j2").render(d=doc, h=doc["headline"], imgs=imgs)
