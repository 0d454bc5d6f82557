"""Writes a line chart as SVG, with no plotting library.
Usage: python3 bench/plot.py OUT.svg TITLE XLABEL YLABEL < series.json
series.json: {"series name": [[x, y], ...], ...}; both axes are logarithmic.
"""
import json
import math
import sys

out, title, xlabel, ylabel = sys.argv[1:5]
series = json.load(sys.stdin)
W, H, L, R, T, B = 640, 400, 70, 170, 40, 50
points = [p for s in series.values() for p in s if p[0] > 0 and p[1] > 0]
x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
y0, y1 = min(p[1] for p in points), max(p[1] for p in points)
lx0, lx1 = math.floor(math.log10(x0)), math.ceil(math.log10(x1))
ly0, ly1 = math.floor(math.log10(y0)), math.ceil(math.log10(y1))
lx1 += lx1 == lx0
ly1 += ly1 == ly0


def sx(x):
    return L + (math.log10(x) - lx0) / (lx1 - lx0) * (W - L - R)


def sy(y):
    return H - B - (math.log10(y) - ly0) / (ly1 - ly0) * (H - T - B)


colors = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd"]
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
       f'<rect width="{W}" height="{H}" fill="white"/>',
       f'<text x="{W / 2 - R / 2}" y="22" text-anchor="middle" font-size="14">{title}</text>']
for e in range(lx0, lx1 + 1):
    x = sx(10 ** e)
    svg.append(f'<line x1="{x:.1f}" y1="{T}" x2="{x:.1f}" y2="{H - B}" stroke="#ddd"/>')
    svg.append(f'<text x="{x:.1f}" y="{H - B + 16}" text-anchor="middle">{10 ** e:g}</text>')
for e in range(ly0, ly1 + 1):
    y = sy(10 ** e)
    svg.append(f'<line x1="{L}" y1="{y:.1f}" x2="{W - R}" y2="{y:.1f}" stroke="#ddd"/>')
    svg.append(f'<text x="{L - 6}" y="{y + 4:.1f}" text-anchor="end">{10 ** e:g}</text>')
svg.append(f'<text x="{(L + W - R) / 2}" y="{H - 12}" text-anchor="middle">{xlabel}</text>')
svg.append(f'<text x="16" y="{(T + H - B) / 2}" text-anchor="middle" transform="rotate(-90 16 {(T + H - B) / 2})">{ylabel}</text>')
for i, (name, pts) in enumerate(series.items()):
    c = colors[i % len(colors)]
    pts = sorted(p for p in pts if p[0] > 0 and p[1] > 0)
    svg.append('<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>' % (
        c, " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)))
    for x, y in pts:
        svg.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{c}"/>')
    ly = T + 10 + 18 * i
    svg.append(f'<line x1="{W - R + 12}" y1="{ly}" x2="{W - R + 32}" y2="{ly}" stroke="{c}" stroke-width="2"/>')
    svg.append(f'<text x="{W - R + 38}" y="{ly + 4}">{name}</text>')
svg.append("</svg>")
open(out, "w").write("\n".join(svg) + "\n")
