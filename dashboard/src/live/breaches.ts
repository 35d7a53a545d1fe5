import type { Breach } from "../api/types";

/**
 * A newest-first list of breaches with those that just arrived on top: the feed sends a batch oldest first, and a
 * breach replayed after a reconnect may already be in the list (each id once).
 */
export function withArrived(current: Breach[], arrived: Breach[], keep: number): Breach[] {
  const ids = new Set(arrived.map((breach) => breach.id));
  return [...arrived.slice().reverse(), ...current.filter((breach) => !ids.has(breach.id))].slice(0, keep);
}
