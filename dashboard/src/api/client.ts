/** The typed API client: paths, parameters and answers come from the OpenAPI document
 * (openapi.json, checked against the server by tests/query/test_openapi_snapshot.py). */
import type { paths } from "./schema.gen";
import { refused } from "./session";

type GetPath = { [P in keyof paths]: paths[P] extends { get: object } ? P : never }[keyof paths];
type Operation<P extends GetPath> = paths[P]["get"];
type QueryOf<P extends GetPath> = Operation<P> extends { parameters: { query?: infer Q } } ? NonNullable<Q> : never;
type PathOf<P extends GetPath> = Operation<P> extends { parameters: { path: infer A } } ? A : never;
export type Answer<P extends GetPath> = Operation<P> extends {
  responses: { 200: { content: { "application/json": infer R } } };
}
  ? R
  : never;

/** Query values go on the URL as text: times may be RFC 3339 (the server parses both). */
export type QueryParams<P extends GetPath> = {
  [K in keyof QueryOf<P>]?: string | number | boolean | string[] | null;
};

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** URLs relative to the app's root (the document's <base>), so a path prefix added by a proxy is kept. */
export function apiUrl(path: string, query: Record<string, unknown> = {}): URL {
  const url = new URL(path.replace(/^\//, ""), document.baseURI);
  for (const [key, value] of Object.entries(query)) {
    if (value === undefined || value === null || value === "") continue;
    for (const one of Array.isArray(value) ? value : [value]) url.searchParams.append(key, String(one));
  }
  return url;
}

export async function apiGet<P extends GetPath>(
  path: P,
  options: { path?: PathOf<P>; query?: QueryParams<P> } = {},
  signal?: AbortSignal,
): Promise<Answer<P>> {
  const concrete = Object.entries((options.path ?? {}) as Record<string, string>).reduce(
    (text, [name, value]) => text.replace(`{${name}}`, encodeURIComponent(value)),
    path as string,
  );
  const response = await fetch(apiUrl(concrete, options.query ?? {}), { signal });
  if (!response.ok) {
    if (response.status === 401) refused(); // the app shows the login form
    let message = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      message = body?.error?.message ?? message;
    } catch {
      /* not JSON: keep the status line */
    }
    throw new ApiError(response.status, message);
  }
  return (await response.json()) as Answer<P>;
}
