import { forwardRef } from "react";

/** Find spans by name, service, model or id: matches are highlighted, or shown alone with their ancestors. */
export const SpanSearch = forwardRef<HTMLInputElement, {
  search: string;
  onSearch: (text: string) => void;
  onlyMatches: boolean;
  onOnlyMatches: (only: boolean) => void;
  matches: number | null;
  onNext: () => void;
}>(function SpanSearch(props, ref) {
  return (
    <span style={{ display: "inline-flex", gap: 6, alignItems: "center" }}>
      <input
        ref={ref}
        type="search"
        placeholder="Find spans  ( / )"
        value={props.search}
        data-testid="span-search"
        onChange={(event) => props.onSearch(event.currentTarget.value)}
        onKeyDown={(event) => {
          if (event.key === "Enter") props.onNext();
          if (event.key === "Escape") event.currentTarget.blur();
        }}
      />
      <label className="muted" style={{ display: "inline-flex", gap: 4, alignItems: "center" }}>
        <input
          type="checkbox"
          checked={props.onlyMatches}
          data-testid="only-matches"
          onChange={(event) => props.onOnlyMatches(event.currentTarget.checked)}
        />
        only matches
      </label>
      {props.matches !== null && <span className="muted" data-testid="match-count">{props.matches} found</span>}
    </span>
  );
});
