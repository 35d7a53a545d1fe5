// @vitest-environment jsdom
import { afterEach, describe, expect, it } from "vitest";
import { cleanup, render } from "@testing-library/react";
import { useWaterfallKeys, type WaterfallAction } from "./useWaterfallKeys";

afterEach(cleanup);

function Probe({ actions }: { actions: WaterfallAction[] }) {
  useWaterfallKeys((action) => actions.push(action));
  return (
    <div>
      <input data-testid="field" />
      <button data-testid="button">b</button>
    </div>
  );
}

const press = (key: string, target: EventTarget = window) =>
  target.dispatchEvent(new KeyboardEvent("keydown", { key, bubbles: true }));

describe("useWaterfallKeys", () => {
  it("maps j/k, Enter, Esc, h/l and / to actions", () => {
    const actions: WaterfallAction[] = [];
    render(<Probe actions={actions} />);
    for (const key of ["j", "k", "Enter", "Escape", "h", "l", "/", "ArrowDown", "x"]) press(key);
    expect(actions).toEqual(["down", "up", "open", "close", "collapse", "expand", "find", "down"]);
  });

  it("leaves keys alone while typing, and Enter alone on a button", () => {
    const actions: WaterfallAction[] = [];
    const view = render(<Probe actions={actions} />);
    press("j", view.getByTestId("field"));
    press("Enter", view.getByTestId("button"));
    press("j", view.getByTestId("button"));
    expect(actions).toEqual(["down"]);
  });
});
