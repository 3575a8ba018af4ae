/**
 * `path` as Express matches it against a route: without regard to case or a trailing slash, so a
 * middleware that picks requests by path sees the same route the router will.
 */
export function routePath(path: string): string {
  return path.toLowerCase().replace(/\/+$/, '') || '/';
}
