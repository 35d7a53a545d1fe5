/** Attributes as a sorted key/value list; lists and maps shown as JSON. */
export function AttributeTable({ attributes }: { attributes: Record<string, unknown> }) {
  const keys = Object.keys(attributes).sort();
  if (!keys.length) return <p className="muted">None.</p>;
  return (
    <div className="kv" data-testid="attributes">
      {keys.map((key) => (
        <Pair key={key} name={key} value={attributes[key]} />
      ))}
    </div>
  );
}

function Pair({ name, value }: { name: string; value: unknown }) {
  return (
    <>
      <div>{name}</div>
      <div>{typeof value === "string" ? value : JSON.stringify(value)}</div>
    </>
  );
}
