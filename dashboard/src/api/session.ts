/** The dashboard's login: a read key posted to the query server, which answers with an HttpOnly session cookie
 * (the app never sees it; fetch and the live feed's WebSocket send it by themselves). */
import { useSyncExternalStore } from "react";
import { apiUrl } from "./client";

/** "open": no 401 seen (the server needs no key, or a cookie is valid); "login": a read was refused. */
export type Access = "open" | "login";

/** Set by this tab's login, so that a reload still offers "Sign out" (the cookie itself is unreadable). */
const SIGNED_IN = "genai-collector.signed-in";

let access: Access = "open";
const listeners = new Set<() => void>();

function setAccess(next: Access): void {
  if (next === access) return;
  access = next;
  for (const listener of listeners) listener();
}

/** Called by the API client on any 401: the key or session is missing, wrong or expired. */
export function refused(): void {
  forgetSignIn();
  setAccess("login");
}

export function useAccess(): Access {
  return useSyncExternalStore(
    (listener) => {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    () => access,
  );
}

export function signedIn(): boolean {
  try {
    return localStorage.getItem(SIGNED_IN) === "1";
  } catch {
    return false;
  }
}

function forgetSignIn(): void {
  try {
    localStorage.removeItem(SIGNED_IN);
  } catch {
    /* storage disabled: nothing to forget */
  }
}

/** What the login form says for a refused key; null when the login worked. */
export function loginMessage(status: number, retryAfter: string | null = null): string | null {
  if (status >= 200 && status < 300) return null;
  switch (status) {
    case 401:
      return "That key is not valid.";
    case 403:
      return "That key has no read scope.";
    case 429:
      return `Too many wrong keys: try again ${retryAfter ? `in ${retryAfter} s` : "later"}.`;
    default:
      return `The login failed (${status}).`;
  }
}

/** Post the key; on success the cookie is set and the refused reads can run again. */
export async function login(key: string): Promise<string | null> {
  let response: Response;
  try {
    response = await fetch(apiUrl("api/v1/login"), {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ key }),
    });
  } catch {
    return "The collector cannot be reached.";
  }
  const message = loginMessage(response.status, response.headers.get("retry-after"));
  if (message === null) {
    try {
      localStorage.setItem(SIGNED_IN, "1");
    } catch {
      /* storage disabled: no "Sign out" after a reload */
    }
    setAccess("open");
  }
  return message;
}

export async function logout(): Promise<void> {
  try {
    await fetch(apiUrl("api/v1/logout"), { method: "POST" });
  } finally {
    refused();
  }
}
