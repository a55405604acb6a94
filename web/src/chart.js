// A live line chart of one series (uPlot, loaded as the global `uPlot` by index.html).
// Keeps the last WINDOW_MS of points; the container's data-points, data-last and
// data-last-at (Unix ms) attributes always describe what is plotted (the end-to-end test
// reads them).

const WINDOW_MS = 5 * 60 * 1000;
const HEIGHT = 120;
const MINUTES = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
const SECONDS = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23' });
// Time axis labels: "18:20" on whole minutes, "18:20:30" between them (no date line).
const clock = (unixSeconds) => (unixSeconds % 60 ? SECONDS : MINUTES).format(new Date(unixSeconds * 1000));

export class SeriesChart {
  // format(value) → axis/legend text; color: the line colour.
  constructor(container, { label, format, color }) {
    this.container = container;
    this.times = []; // Unix seconds (uPlot's time axis)
    this.values = [];
    this.plot = new globalThis.uPlot({
      width: Math.max(container.clientWidth, 200),
      height: HEIGHT,
      legend: { show: false },
      padding: [10, 20, 0, 0], // room for the last time label
      cursor: { y: false, points: { size: 6 } },
      scales: { y: { range: (u, min, max) => [0, max > 0 ? max * 1.15 : 1] } },
      axes: [
        {
          stroke: '#6b7785',
          grid: { stroke: '#eef1f4' },
          ticks: { show: false },
          size: 28,
          space: 36,
          values: (u, splits) => splits.map(clock),
        },
        {
          stroke: '#6b7785',
          grid: { stroke: '#eef1f4' },
          ticks: { show: false },
          size: 56,
          values: (u, splits) => splits.map(format),
        },
      ],
      series: [
        {},
        { label, stroke: color, width: 1.5, fill: `${color}22`, points: { show: false }, value: (u, v) => (v == null ? '' : format(v)) },
      ],
    }, [this.times, this.values], container);
    // Follow the card's width (grid reflow, window resize).
    this.resizer = new ResizeObserver(() => {
      const width = this.container.clientWidth;
      if (width > 0 && width !== this.plot.width) this.plot.setSize({ width, height: HEIGHT });
    });
    this.resizer.observe(container);
    this.redraw();
  }

  // History from QuerySeries, merged with whatever live points arrived before it.
  load(points) {
    const merged = new Map(points.map((p) => [Number(p.atUnixMs), p.value]));
    this.times.forEach((t, i) => merged.set(Math.round(t * 1000), this.values[i]));
    const sorted = [...merged.entries()].sort((a, b) => a[0] - b[0]);
    this.times = sorted.map(([t]) => t / 1000);
    this.values = sorted.map(([, v]) => v);
    this.redraw();
  }

  // A live sample; out-of-order or repeated samples are ignored.
  append(atUnixMs, value) {
    const t = Number(atUnixMs) / 1000;
    if (this.times.length && t <= this.times[this.times.length - 1]) return;
    this.times.push(t);
    this.values.push(value);
    this.redraw();
  }

  redraw() {
    // Relative to the newest point: the host's clock, not the browser's, dates the samples.
    const oldest = this.times[this.times.length - 1] - WINDOW_MS / 1000;
    let drop = 0;
    while (drop < this.times.length - 1 && this.times[drop] < oldest) drop++;
    if (drop) {
      this.times.splice(0, drop);
      this.values.splice(0, drop);
    }
    this.plot.setData([this.times, this.values]);
    this.container.dataset.points = String(this.times.length);
    const n = this.times.length;
    this.container.dataset.last = n ? String(this.values[n - 1]) : '';
    this.container.dataset.lastAt = n ? String(Math.round(this.times[n - 1] * 1000)) : '';
  }

  destroy() {
    this.resizer.disconnect();
    this.plot.destroy();
  }
}
