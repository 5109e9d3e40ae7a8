/**
 * Gateway API hostname intersection between a listener hostname and a route hostname
 * (either may be a "*." wildcard). Returns the more specific of the two, or undefined.
 */
export function intersectHostname(listener: string | undefined, route: string): string | undefined {
  if (!listener) return route;
  if (listener === route) return route;
  if (listener.startsWith('*.')) {
    const suffix = listener.slice(1);
    if (route.startsWith('*.')) return route.endsWith(suffix) ? route : listener.endsWith(route.slice(1)) ? listener : undefined;
    return route.endsWith(suffix) && route.length > suffix.length ? route : undefined;
  }
  if (route.startsWith('*.')) {
    const suffix = route.slice(1);
    return listener.endsWith(suffix) && listener.length > suffix.length ? listener : undefined;
  }
  return undefined;
}

/** Effective hostnames of a route on one listener; empty when they do not intersect. */
export function effectiveHostnames(listener: string | undefined, routeHostnames: readonly string[] | undefined): string[] {
  if (!routeHostnames || routeHostnames.length === 0) return [listener ?? '*'];
  const out = new Set<string>();
  for (const h of routeHostnames) {
    const i = intersectHostname(listener, h);
    if (i) out.add(i);
  }
  return [...out];
}
