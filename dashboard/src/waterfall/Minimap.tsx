import { useEffect, useRef } from "react";
import type { SkeletonSpan } from "../api/types";
import { useCurrentTheme } from "../components/Layout";
import { colorFor, cssVar } from "../theme";
import { barGeometry, type TraceLayout } from "./layout";

/** The whole trace in one <canvas> (every span, collapsed or not), with the rows in view outlined.
 * A click asks to show the span at that height. */
export function Minimap({ layout, viewFrom, viewTo, onPick }: {
  layout: TraceLayout<SkeletonSpan>;
  viewFrom: number;
  viewTo: number;
  onPick: (spanIndex: number) => void;
}) {
  const canvas = useRef<HTMLCanvasElement>(null);
  const theme = useCurrentTheme();

  useEffect(() => {
    const element = canvas.current;
    if (!element) return;
    const draw = () => {
      const ratio = window.devicePixelRatio || 1;
      const width = element.clientWidth;
      const height = element.clientHeight;
      element.width = width * ratio;
      element.height = height * ratio;
      const context = element.getContext("2d");
      if (!context) return;
      context.scale(ratio, ratio);
      context.clearRect(0, 0, width, height);
      const count = layout.spans.length;
      const rowHeight = Math.max(height / Math.max(count, 1), 0.5);
      layout.spans.forEach((span, index) => {
        const { left, width: barWidth } = barGeometry(layout, span);
        context.fillStyle = span.status_code === "error" ? cssVar("--error") : colorFor(span.service_name);
        context.fillRect(left * width, (index / count) * height, Math.max(barWidth * width, 1), Math.max(rowHeight, 1));
      });
      if (count) {
        context.strokeStyle = cssVar("--accent");
        context.lineWidth = 1.5;
        const top = (viewFrom / count) * height;
        const bottom = ((viewTo + 1) / count) * height;
        context.strokeRect(1, top, width - 2, Math.max(bottom - top, 3));
      }
    };
    draw();
    const observer = new ResizeObserver(draw);
    observer.observe(element);
    return () => observer.disconnect();
  }, [layout, viewFrom, viewTo, theme]);

  return (
    <canvas
      ref={canvas}
      className="minimap"
      data-testid="minimap"
      onClick={(event) => {
        const box = event.currentTarget.getBoundingClientRect();
        const index = Math.floor(((event.clientY - box.top) / box.height) * layout.spans.length);
        onPick(Math.min(layout.spans.length - 1, Math.max(0, index)));
      }}
    />
  );
}
