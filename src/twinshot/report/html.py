"""The self-contained HTML page of a report: every image inlined as a base64 PNG."""

from __future__ import annotations

import base64
import html
from typing import Any, Sequence

CSS = """
:root { --ink: #1d2731; --muted: #5c6b78; --line: #dde3e8; --card: #ffffff; --bg: #f4f6f8;
        --good: #2a9d8f; --bad: #e76f51; --accent: #264653; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: var(--ink); background: var(--bg); }
header { background: var(--accent); color: #fff; padding: 22px 32px; }
header h1 { margin: 0 0 4px; font-size: 22px; font-weight: 600; }
header p { margin: 0; opacity: .85; font-size: 13px; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 32px 48px; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 10px;
          padding: 18px 22px; margin-bottom: 22px; }
h2 { font-size: 17px; margin: 0 0 12px; }
.tiles { display: grid; grid-template-columns: repeat(auto-fit, minmax(170px, 1fr)); gap: 12px; }
.tile { border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; background: #fbfcfd; }
.tile .k { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.tile .v { font-size: 22px; font-weight: 600; }
.tile .ci { color: var(--muted); font-size: 12px; }
.figs { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 16px; align-items: start; }
figure { margin: 0; text-align: center; }
figure img { max-width: 100%; height: auto; }
figcaption { color: var(--muted); font-size: 12px; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid var(--line); vertical-align: middle; }
th { color: var(--muted); font-weight: 600; }
td.pair img { width: 84px; height: 84px; object-fit: contain; border: 1px solid var(--line);
              border-radius: 4px; margin-right: 6px; background: #fff; image-rendering: pixelated; }
td.path { color: var(--muted); font-size: 11px; word-break: break-all; }
.score { font-variant-numeric: tabular-nums; font-weight: 600; }
.fa .score { color: var(--bad); } .fr .score { color: var(--bad); }
.none { color: var(--muted); font-style: italic; }
footer { color: var(--muted); font-size: 12px; text-align: center; margin-top: 12px; }
"""


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _e(x: Any) -> str:
    return html.escape(str(x))


def _pct(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{100 * x:.{digits}f}%"


def _tile(key: str, value: str, ci: str = "") -> str:
    return f'<div class="tile"><div class="k">{_e(key)}</div><div class="v">{_e(value)}</div><div class="ci">{_e(ci)}</div></div>'


def _worst_table(rows: Sequence[dict[str, Any]], thumbs: Sequence[tuple[bytes, bytes]], kind: str) -> str:
    if not rows:
        return '<p class="none">none at this threshold</p>'
    out = ["<table><tr><th>#</th><th>images</th><th>score</th><th>classes</th><th>files</th></tr>"]
    for i, (row, (a, b)) in enumerate(zip(rows, thumbs), start=1):
        out.append(
            f'<tr class="{kind}"><td>{i}</td>'
            f'<td class="pair"><img alt="image 1" src="{data_uri(a)}"><img alt="image 2" src="{data_uri(b)}"></td>'
            f'<td class="score">{row["score"]:.3f}</td><td>{_e(row["class1"])} / {_e(row["class2"])}</td>'
            f'<td class="path">{_e(row["path1"])}<br>{_e(row["path2"])}</td></tr>'
        )
    out.append("</table>")
    return "".join(out)


def render_page(summary: dict[str, Any], figures: dict[str, bytes], worst_thumbs: dict[str, list[tuple[bytes, bytes]]]) -> str:
    """The HTML page from the report's numbers (``summary``), figures (name -> PNG) and the
    thumbnails of the worst false accepts (``"false_accepts"``) and rejects."""
    s = summary
    v = s["verification"]
    op = s["operating_point"]
    tiles = [
        _tile("ROC AUC", f"{v['auc']:.4f}"),
        _tile("Equal error rate", _pct(v["eer"]), f"at score threshold {v['eer_threshold']:.3f}"),
        _tile(f"FAR at threshold", _pct(op["far"], 3), f"95% CI {_pct(op['far_ci95'][0], 3)} – {_pct(op['far_ci95'][1], 3)} (bootstrap)"
              + (f"; {_pct(op['far_exact95'][0], 3)} – {_pct(op['far_exact95'][1], 3)} (exact)" if "far_exact95" in op else "")),
        _tile(f"FRR at threshold", _pct(op["frr"]), f"95% CI {_pct(op['frr_ci95'][0])} – {_pct(op['frr_ci95'][1])} (bootstrap)"
              + (f"; {_pct(op['frr_exact95'][0])} – {_pct(op['frr_exact95'][1])} (exact)" if "frr_exact95" in op else "")),
        _tile("Score threshold", f"{op['threshold']:.3f}", f"target FAR {op['target_far']:g}; accepted at or above (head logit)"),
        _tile("Pairs", f"{v['n_genuine']:,} / {v['n_impostor']:,}", "genuine / impostor"),
    ]
    ep = s.get("episodes")
    if ep:
        ci = "" if ep["ci95"] is None else f"± {_pct(ep['ci95'])} (95% CI, {ep['episodes']} episodes)"
        tiles.append(_tile(f"{ep['n_way']}-way {ep['n_shot']}-shot accuracy", _pct(ep["accuracy"]), ci))
    os_section = ""
    o = s.get("open_set")
    if o:
        pm = lambda d: _pct(d["mean"]) + ("" if d["ci95"] is None else f" ± {_pct(d['ci95'])}")  # noqa: E731
        os_tiles = [_tile("Closed-set rank-1", pm(o["rank1"])), _tile("Rank-5", pm(o["rank5"]))]
        os_tiles += [_tile(f"DIR at FPIR {k}", pm(v), f"open-set accuracy {pm(o['accuracy_at_fpir'][k])}") for k, v in o["dir_at_fpir"].items()]
        os_section = (
            f'<section><h2>Open set</h2><p>{o["enrolled"]} of {o["n_classes"]} classes enrolled ({o["references"]} reference(s) each), '
            f'every class queried, the others are strangers; means with 95% intervals over {o["seeds"]} draws. DIR: enrolled queries '
            f'accepted as the right identity; FPIR: strangers accepted as someone (threshold set on the draw\'s strangers).</p>'
            f'<div class="tiles">{"".join(os_tiles)}</div><div class="figs">'
            f'<figure><img alt="open-set DET" src="{data_uri(figures["open_set_det"])}"><figcaption>Open-set DET: 1 - DIR against FPIR</figcaption></figure></div></section>'
        )
    fig_html = lambda name, cap: f'<figure><img alt="{_e(cap)}" src="{data_uri(figures[name])}"><figcaption>{_e(cap)}</figcaption></figure>'  # noqa: E731
    fa, fr = s["worst"]["false_accepts"], s["worst"]["false_rejects"]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>twinshot report: {_e(s['model'])}</title><style>{CSS}</style></head>
<body>
<header><h1>Verification report: {_e(s['model'])}</h1>
<p>{_e(s['source_kind'])}: {_e(s['source'])} &middot; {s['n_images']:,} images, {s['n_classes']:,} classes &middot; fingerprint {_e(str(s.get('fingerprint', ''))[:12])} &middot; scores are logits, higher is more alike</p></header>
<main>
<section><h2>Summary</h2><div class="tiles">{''.join(tiles)}</div></section>
<section><h2>ROC and DET</h2><div class="figs">{fig_html('roc', 'ROC: true against false accept rate, EER and the threshold marked')}{fig_html('det', 'DET: false reject against false accept rate (normal deviate scale)')}</div></section>
<section><h2>Scores</h2><div class="figs">{fig_html('scores', 'Genuine and impostor score histograms with the threshold (solid) and the EER threshold (dashed)')}{fig_html('embeddings', 'Embeddings in two dimensions, coloured by class')}</div></section>
{os_section}
<section><h2>Worst false accepts</h2><p>Impostor pairs with the highest scores (accepted when the score is at least {op['threshold']:.3f}; {len(fa)} shown).</p>{_worst_table(fa, worst_thumbs['false_accepts'], 'fa')}</section>
<section><h2>Worst false rejects</h2><p>Genuine pairs with the lowest scores ({len(fr)} shown).</p>{_worst_table(fr, worst_thumbs['false_rejects'], 'fr')}</section>
<footer>twinshot report &middot; FAR/FRR intervals: stratified bootstrap ({s['operating_point']['n_boot']} draws) at the fixed threshold</footer>
</main></body></html>
"""
