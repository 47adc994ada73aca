"""Charts as SVG, drawn on the server: no chart library, nothing for the browser to fetch.

Three shapes cover the console's questions: lines over time (revenue by month),
columns per category, plain or stacked (seconds per stage of each execution), and
horizontal bars for rankings (designs, cities, staff), one panel per measure. Every
mark carries a ``<title>``, so pointing at it tells its exact value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from html import escape

#: Colours told apart by people with the common colour deficiencies (Okabe and Ito's set).
PALETTE = (
    *("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#000"),
    "#999",
)
_FONT = 'font-family="system-ui, sans-serif" font-size="11"'

Number = int | float | Decimal


def format_number(value: Number | None) -> str:
    """A figure for people: thousands grouped, money with its two decimals.

    Examples
    --------
    >>> format_number(Decimal("1234567.5")), format_number(42), format_number(0.25)
    ('1,234,567.50', '42', '0.25')
    """
    if value is None:
        return ""
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.2f}"


def _nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten that is at least ``value``."""
    if value <= 0:
        return 1.0
    power = 10.0 ** len(str(int(value))) / 10
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power


#: Legend entries in one row of a chart 720 wide.
_LEGEND_PER_ROW = 5


def _legend_rows(names: Sequence[str]) -> int:
    return (len(names) + _LEGEND_PER_ROW - 1) // _LEGEND_PER_ROW


def _legend(names: Sequence[str], x: float, y: float) -> list[str]:
    parts = []
    for index, name in enumerate(names):
        left = x + (index % _LEGEND_PER_ROW) * 130
        top = y + (index // _LEGEND_PER_ROW) * 14
        colour = PALETTE[index % len(PALETTE)]
        parts.append(
            f'<rect x="{left}" y="{top - 9}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{left + 14}" y="{top}" {_FONT}>{escape(name[:18])}</text>'
        )
    return parts


def _y_axis(left: float, top: float, height: float, width: float, ceiling: float) -> list[str]:
    parts = []
    for tick in range(5):
        value = ceiling * tick / 4
        y = top + height - height * tick / 4
        parts.append(
            f'<line x1="{left}" x2="{left + width}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" {_FONT}>'
            f"{escape(_short(value))}</text>"
        )
    return parts


def _short(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    if value >= 1_000:
        return f"{value / 1_000:g}k"
    return f"{value:g}"


def _x_labels(categories: Sequence[str], left: float, step: float, bottom: float) -> list[str]:
    # At most about twelve labels fit; the others are left to the marks' titles.
    every = max(1, len(categories) // 12 + (len(categories) % 12 > 0))
    return [
        f'<text x="{left + step * (index + 0.5):.1f}" y="{bottom + 14}" text-anchor="middle" '
        f"{_FONT}>{escape(category[-12:])}</text>"
        for index, category in enumerate(categories)
        if index % every == 0
    ]


def _svg(width: float, height: float, label: str, parts: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{escape(label)}" class="chart">' + "".join(parts) + "</svg>"
    )


def line_chart(
    categories: Sequence[str], series: Mapping[str, Sequence[Number | None]], *, label: str
) -> str:
    """Lines over categories (months, executions), one per series.

    Examples
    --------
    >>> line_chart(["2024-01", "2024-02"], {"GBP": [1, 2]}, label="revenue").startswith("<svg")
    True
    """
    width, left = 720.0, 56.0
    top = 14.0 + 14 * _legend_rows(list(series))
    bottom = top + 196
    height = bottom + 40
    plot_width, plot_height = width - left - 12, bottom - top
    values = [float(v) for points in series.values() for v in points if v is not None]
    ceiling = _nice_ceiling(max(values, default=0.0))
    step = plot_width / max(len(categories), 1)
    parts = _y_axis(left, top, plot_height, plot_width, ceiling)
    for index, (name, points) in enumerate(series.items()):
        colour = PALETTE[index % len(PALETTE)]
        coordinates = [
            (left + step * (position + 0.5), bottom - plot_height * float(value) / ceiling, value)
            for position, value in enumerate(points)
            if value is not None
        ]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in coordinates)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for (x, y, value), category in zip(coordinates, categories, strict=False):
            parts.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}">'
                f"<title>{escape(name)} {escape(category)}: {format_number(value)}</title></circle>"
            )
    parts += _x_labels(categories, left, step, bottom)
    parts += _legend(list(series), left, 12)
    return _svg(width, height, label, parts)


def column_chart(
    categories: Sequence[str],
    series: Mapping[str, Sequence[Number]],
    *,
    label: str,
    stacked: bool = False,
) -> str:
    """Columns per category: side by side, or stacked into one column per category.

    Examples
    --------
    >>> "<rect" in column_chart(["run 1"], {"IngestTables": [1.5]}, label="seconds")
    True
    """
    names = list(series)
    width, left = 720.0, 56.0
    top = 14.0 + 14 * _legend_rows(names)
    bottom = top + 196
    height = bottom + 40
    plot_width, plot_height = width - left - 12, bottom - top
    totals = [
        sum(float(series[name][index]) for name in names) if stacked else 0.0
        for index in range(len(categories))
    ]
    peak = max(totals) if stacked and totals else 0.0
    if not stacked:
        peak = max((float(v) for points in series.values() for v in points), default=0.0)
    ceiling = _nice_ceiling(peak)
    step = plot_width / max(len(categories), 1)
    bar = step * 0.7 / (1 if stacked else max(len(names), 1))
    parts = _y_axis(left, top, plot_height, plot_width, ceiling)
    for position, category in enumerate(categories):
        base = bottom
        for index, name in enumerate(names):
            value = float(series[name][position])
            tall = plot_height * value / ceiling
            x = left + step * position + step * 0.15 + (0 if stacked else bar * index)
            y = base - tall
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{tall:.1f}" '
                f'fill="{PALETTE[index % len(PALETTE)]}"><title>{escape(category)}: '
                f"{escape(name)} {format_number(series[name][position])}</title></rect>"
            )
            if stacked:
                base = y
    parts += _x_labels(categories, left, step, bottom)
    parts += _legend(names, left, 12)
    return _svg(width, height, label, parts)


def bar_chart(
    labels: Sequence[str], measures: Mapping[str, Sequence[Number]], *, label: str
) -> str:
    """Horizontal bars, a row per label and a panel per measure (each to its own scale).

    Examples
    --------
    >>> "Totes Blue" in bar_chart(["Totes Blue"], {"revenue": [Decimal("9.50")]}, label="r")
    True
    """
    row_height, label_width, panel_width, top = 20.0, 250.0, 240.0, 22.0
    width = label_width + panel_width * len(measures) + 12
    height = top + row_height * len(labels) + 8
    parts = []
    for row, text in enumerate(labels):
        y = top + row_height * row
        parts.append(
            f'<text x="{label_width - 6}" y="{y + 13}" text-anchor="end" {_FONT}>'
            f"{escape(text if len(text) <= 40 else text[:39] + '…')}</text>"
        )
    for panel, (name, values) in enumerate(measures.items()):
        left = label_width + panel_width * panel
        ceiling = max((float(value) for value in values), default=0.0) or 1.0
        colour = PALETTE[panel % len(PALETTE)]
        parts.append(f'<text x="{left}" y="12" font-weight="bold" {_FONT}>{escape(name)}</text>')
        for row, value in enumerate(values):
            y = top + row_height * row
            long = (panel_width - 80) * float(value) / ceiling
            parts.append(
                f'<rect x="{left}" y="{y + 3}" width="{long:.1f}" height="{row_height - 6}" '
                f'fill="{colour}"><title>{escape(labels[row])}: {escape(name)} '
                f"{format_number(value)}</title></rect>"
                f'<text x="{left + long + 4:.1f}" y="{y + 13}" {_FONT}>'
                f"{format_number(value)}</text>"
            )
    return _svg(width, height, label, parts)
