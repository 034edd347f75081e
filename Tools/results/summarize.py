"""Summarises `usi train` run directories into the tables and curves of Docs/RESULTS.md.

    python3 Tools/results/summarize.py --svg Docs/results-5-epochs.svg RUN_DIR...

Prints a markdown table (best top-1 per run, and top-1 per epoch: the learning curves) and
writes an SVG chart of validation top-1 (the better of model and EMA) per epoch.
"""
import argparse
import json
import pathlib

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]


def load(run):
    lines = (pathlib.Path(run) / "metrics.jsonl").read_text().splitlines()
    # Epoch lines carry top1; the log-interval lines between them do not.
    epochs = [e for e in (json.loads(line) for line in lines if line.strip()) if "top1" in e]
    return [max(e["top1"], e.get("top1_ema") or -1) for e in epochs], epochs


def svg(series, path, title):
    width, height, left, right, top, bottom = 640, 360, 56, 170, 30, 36
    xs = [i for _, values in series for i in range(len(values))]
    ys = [v for _, values in series for v in values]
    x0, x1 = 0, max(max(xs), 1)
    y0, y1 = min(ys) - 0.5, max(ys) + 0.5
    px = lambda x: left + (x - x0) / (x1 - x0) * (width - left - right)
    py = lambda y: top + (1 - (y - y0) / (y1 - y0)) * (height - top - bottom)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif">',
           f'<text x="{left}" y="18" font-size="14" font-weight="bold">{title}</text>',
           f'<line x1="{left}" y1="{height-bottom}" x2="{width-right}" y2="{height-bottom}" stroke="#999"/>',
           f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height-bottom}" stroke="#999"/>']
    for k in range(5):
        y = y0 + (y1 - y0) * k / 4
        out.append(f'<text x="{left-6}" y="{py(y)+4:.1f}" font-size="11" text-anchor="end">{y:.1f}</text>')
        out.append(f'<line x1="{left}" y1="{py(y):.1f}" x2="{width-right}" y2="{py(y):.1f}" stroke="#eee"/>')
    for x in range(x0, x1 + 1):
        out.append(f'<text x="{px(x):.1f}" y="{height-bottom+16}" font-size="11" text-anchor="middle">{x}</text>')
    out.append(f'<text x="{(left+width-right)/2}" y="{height-4}" font-size="12" text-anchor="middle">epoch</text>')
    for i, (name, values) in enumerate(series):
        color = COLORS[i % len(COLORS)]
        points = " ".join(f"{px(x):.1f},{py(v):.1f}" for x, v in enumerate(values))
        out.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{points}"/>')
        out.append(f'<text x="{width-right+8}" y="{top+16*(i+1)}" font-size="12" fill="{color}">{name}</text>')
    out.append("</svg>")
    pathlib.Path(path).write_text("\n".join(out) + "\n")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--svg")
    parser.add_argument("--title", default="Fashion-MNIST test top-1 (%), better of model and EMA")
    parser.add_argument("runs", nargs="+")
    args = parser.parse_args()
    series = []
    print("| run | best top-1 | top-1 per epoch | minutes |")
    print("|---|---|---|---|")
    for run in args.runs:
        curve, epochs = load(run)
        name = pathlib.Path(run).name
        series.append((name, curve))
        minutes = sum(e["seconds"] for e in epochs) / 60
        print(f"| {name} | {max(curve):.2f} | {' → '.join(f'{v:.1f}' for v in curve)} | {minutes:.1f} |")
    if args.svg:
        svg(series, args.svg, args.title)


if __name__ == "__main__":
    main()
