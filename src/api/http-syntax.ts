/**
 * What Envoy and HTTP accept in the header names, header values and hostnames Switchyard emits.
 * One place for the rules, shared by the zod schemas (Backend fields) and the route translator
 * (Gateway API fields, which file mode receives without the Gateway API CRDs' own patterns).
 * Each function returns the problem in words, or undefined when the value is acceptable.
 */

/** RFC 9110 section 5.6.2 token: the characters of a header field name. */
export const HEADER_NAME_PATTERN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** A hostname Gateway API calls PreciseHostname (RFC 1123 labels, lower case, no port, no wildcard). */
export const PRECISE_HOSTNAME_PATTERN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** Gateway API Hostname: a PreciseHostname, or one with a leading "*." label. */
export const HOSTNAME_PATTERN = /^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** A hostname in any case, an IPv4 address, or an IPv6 address (what a Backend may dial). */
export const HOST_PATTERN = /^([A-Za-z0-9]([-A-Za-z0-9_]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9_]*[A-Za-z0-9])?)*\.?|\[?[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*\]?)$/;

const MAX_HEADER_NAME = 256;
const MAX_HEADER_VALUE = 4096;

export function headerNameProblem(name: string): string | undefined {
  if (name.startsWith(':')) return `${JSON.stringify(name)} is an HTTP/2 pseudo-header, not a header name; use an ordinary header name`;
  if (!HEADER_NAME_PATTERN.test(name)) return `${JSON.stringify(name)} is not an HTTP header name (RFC 9110 token: letters, digits and !#$%&'*+-.^_\`|~ only)`;
  if (name.length > MAX_HEADER_NAME) return `header name is ${name.length} characters, more than ${MAX_HEADER_NAME}`;
  return undefined;
}

/** Header names a route's header filters may not touch: Envoy refuses the whole RouteConfiguration for them. */
export function headerEditProblem(name: string, edit: 'set' | 'add' | 'remove'): string | undefined {
  const syntax = headerNameProblem(name);
  if (syntax !== undefined && !name.startsWith(':')) return syntax;
  if (name.startsWith(':') || name.toLowerCase() === 'host') {
    const what = edit === 'remove' ? 'removed' : 'set';
    return `${JSON.stringify(name)} cannot be ${what} by a header filter (Envoy refuses ":"-prefixed and host headers there); use URLRewrite (hostname, path) instead`;
  }
  return undefined;
}

export function headerValueProblem(value: string): string | undefined {
  if (/[\r\n\0]/.test(value)) return 'a header value cannot contain CR, LF or NUL characters';
  if (value.length > MAX_HEADER_VALUE) return `header value is ${value.length} characters, more than ${MAX_HEADER_VALUE}`;
  return undefined;
}

export function preciseHostnameProblem(host: string): string | undefined {
  if (host.length > 253 || !PRECISE_HOSTNAME_PATTERN.test(host)) {
    return `${JSON.stringify(host)} is not a hostname (lower-case RFC 1123 labels such as "api.example.com", no port, no spaces)`;
  }
  return undefined;
}

export function hostnameProblem(host: string): string | undefined {
  if (host.length > 253 || !HOSTNAME_PATTERN.test(host)) {
    return `${JSON.stringify(host)} is not a hostname (lower-case RFC 1123 labels such as "api.example.com" or "*.example.com")`;
  }
  return undefined;
}

/** A path Envoy places in :path (rewrites, redirects). */
export function pathProblem(path: string): string | undefined {
  if (/[\r\n\0]/.test(path)) return 'a path cannot contain CR, LF or NUL characters';
  return undefined;
}
