/** A row of buttons choosing one value (a segmented control). */
export function Choice<T extends string>({ label, value, options, onChange }: {
  label: string;
  value: T;
  options: readonly (readonly [T, string])[];
  onChange: (value: T) => void;
}) {
  return (
    <span className="group" role="group" aria-label={label}>
      <span className="muted" style={{ marginRight: 6 }}>{label}</span>
      {options.map(([option, text]) => (
        <button key={option} className={option === value ? "active" : ""} onClick={() => onChange(option)}>
          {text}
        </button>
      ))}
    </span>
  );
}
