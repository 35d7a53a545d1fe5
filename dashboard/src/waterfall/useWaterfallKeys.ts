import { useEffect, useRef } from "react";

export type WaterfallAction = "down" | "up" | "open" | "close" | "collapse" | "expand" | "find";

/** The waterfall's keys (Jaeger UI's and vi's): j/k move, Enter opens, Esc closes, h/l collapse and expand, / finds. */
export const WATERFALL_KEYS: Record<string, WaterfallAction> = {
  j: "down",
  ArrowDown: "down",
  k: "up",
  ArrowUp: "up",
  Enter: "open",
  Escape: "close",
  h: "collapse",
  ArrowLeft: "collapse",
  l: "expand",
  ArrowRight: "expand",
  "/": "find",
};

function typing(event: KeyboardEvent): boolean {
  const target = event.target as HTMLElement | null;
  if (!target) return false;
  // Enter on a focused button presses it; other keys still drive the waterfall after a click on a button
  if (target.tagName === "BUTTON") return event.key === "Enter";
  return ["INPUT", "SELECT", "TEXTAREA"].includes(target.tagName) || target.isContentEditable;
}

/** Calls ``act`` for the waterfall's keys pressed anywhere on the page, except while typing in a field. */
export function useWaterfallKeys(act: (action: WaterfallAction) => void): void {
  const latest = useRef(act);
  latest.current = act;
  useEffect(() => {
    const onKey = (event: KeyboardEvent) => {
      if (typing(event) || event.metaKey || event.ctrlKey || event.altKey) return;
      const action = WATERFALL_KEYS[event.key];
      if (!action) return;
      event.preventDefault();
      latest.current(action);
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, []);
}
