import { useEffect, useRef } from "react";
import uPlot from "uplot";
import { cssVar } from "../theme";
import { useCurrentTheme } from "./Layout";

export interface ChartSeries {
  label: string;
  color: string;
  /** [unix seconds, value] pairs; the chart aligns series on the union of their times. */
  points: [number, number | null][];
  dash?: number[];
}

export interface ChartThreshold {
  label: string;
  value: number;
  color?: string;
}

/** Series on one shared x axis: unix seconds to a sorted union, null where a series has no point. */
export function alignSeries(series: ChartSeries[]): uPlot.AlignedData {
  const times = [...new Set(series.flatMap((one) => one.points.map(([time]) => time)))].sort((a, b) => a - b);
  const position = new Map(times.map((time, index) => [time, index]));
  const columns = series.map((one) => {
    const column: (number | null)[] = new Array(times.length).fill(null);
    for (const [time, value] of one.points) column[position.get(time)!] = value;
    return column;
  });
  return [times, ...columns] as uPlot.AlignedData;
}

function thresholdPlugin(thresholds: ChartThreshold[]): uPlot.Plugin {
  return {
    hooks: {
      draw: (plot) => {
        const context = plot.ctx;
        for (const threshold of thresholds) {
          const y = plot.valToPos(threshold.value, "y", true);
          if (!Number.isFinite(y)) continue;
          context.save();
          context.strokeStyle = threshold.color ?? cssVar("--error");
          context.fillStyle = threshold.color ?? cssVar("--error");
          context.setLineDash([6, 4]);
          context.lineWidth = 1.5 * devicePixelRatio;
          context.beginPath();
          context.moveTo(plot.bbox.left, y);
          context.lineTo(plot.bbox.left + plot.bbox.width, y);
          context.stroke();
          context.font = `${11 * devicePixelRatio}px system-ui, sans-serif`;
          context.textAlign = "right";
          context.fillText(threshold.label, plot.bbox.left + plot.bbox.width - 4 * devicePixelRatio, y - 4 * devicePixelRatio);
          context.restore();
        }
      },
    },
  };
}

/** A uPlot line chart over time, with thresholds as dashed lines; redraws on data, size and theme. */
export function TimeSeriesChart({ series, thresholds = [], height = 220, format = String, testId, xRange, yRange }: {
  series: ChartSeries[];
  thresholds?: ChartThreshold[];
  /** The time range shown (unix seconds); default: the data's. */
  xRange?: [number, number];
  /** The value range; default: from 0 (or below) to the highest value or threshold. */
  yRange?: [number, number];
  height?: number;
  format?: (value: number) => string;
  testId?: string;
}) {
  const container = useRef<HTMLDivElement>(null);
  const theme = useCurrentTheme();

  useEffect(() => {
    const element = container.current;
    if (!element) return;
    const axisColor = cssVar("--fg-muted");
    const gridColor = cssVar("--grid");
    const axis = { stroke: axisColor, grid: { stroke: gridColor, width: 1 }, ticks: { stroke: gridColor, width: 1 } };
    const highest = Math.max(0, ...thresholds.map((threshold) => threshold.value));
    const options: uPlot.Options = {
      width: element.clientWidth || 600,
      height,
      series: [
        {},
        ...series.map((one) => ({
          label: one.label,
          stroke: one.color,
          width: 2,
          dash: one.dash,
          spanGaps: true,
          points: { size: 4 },
          value: (_: uPlot, value: number | null) => (value === null ? "—" : format(value)),
        })),
      ],
      axes: [axis, { ...axis, size: 70, values: (_: uPlot, values: number[]) => values.map(format) }],
      scales: {
        x: xRange ? { time: true, range: () => xRange } : { time: true },
        y: {
          range: (_: uPlot, min: number, max: number) => yRange ?? [Math.min(0, min), Math.max(max, highest * 1.1) || 1],
        },
      },
      legend: { show: true },
      plugins: [thresholdPlugin(thresholds)],
    };
    const plot = new uPlot(options, alignSeries(series), element);
    const observer = new ResizeObserver(() => plot.setSize({ width: element.clientWidth, height }));
    observer.observe(element);
    return () => {
      observer.disconnect();
      plot.destroy();
    };
  }, [series, thresholds, height, format, theme, xRange?.[0], xRange?.[1], yRange?.[0], yRange?.[1]]);

  return <div ref={container} className="chart" data-testid={testId} />;
}
