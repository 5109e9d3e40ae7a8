import { describe, expect, it } from 'vitest';
import { effectiveHostnames, intersectHostname } from '../../src/translate/hostnames.js';

describe('intersectHostname (Gateway API listener × route hostname)', () => {
  it.each([
    // listener, route, result
    [undefined, 'api.example.com', 'api.example.com'],
    [undefined, '*.example.com', '*.example.com'],
    ['api.example.com', 'api.example.com', 'api.example.com'],
    ['api.example.com', 'www.example.com', undefined],
    // a wildcard listener narrows to the route's more specific name, at any depth, never the apex
    ['*.example.com', 'api.example.com', 'api.example.com'],
    ['*.example.com', 'a.b.example.com', 'a.b.example.com'],
    ['*.example.com', 'example.com', undefined],
    ['*.example.com', 'badexample.com', undefined],
    // a wildcard route narrows to the listener's name
    ['api.example.com', '*.example.com', 'api.example.com'],
    ['example.com', '*.example.com', undefined],
    // two wildcards: the narrower one
    ['*.example.com', '*.apps.example.com', '*.apps.example.com'],
    ['*.apps.example.com', '*.example.com', '*.apps.example.com'],
    ['*.example.com', '*.example.org', undefined],
    ['*.example.com', '*.badexample.com', undefined],
  ])('listener %s, route %s → %s', (listener, route, expected) => {
    expect(intersectHostname(listener, route)).toBe(expected);
  });
});

describe('effectiveHostnames', () => {
  it('uses the listener hostname, or every host, when the route names none', () => {
    expect(effectiveHostnames('api.example.com', undefined)).toEqual(['api.example.com']);
    expect(effectiveHostnames(undefined, [])).toEqual(['*']);
  });

  it('keeps only the route hostnames that intersect, each once', () => {
    expect(effectiveHostnames('*.example.com', ['a.example.com', 'other.org', 'a.example.com', '*.example.com'])).toEqual(['a.example.com', '*.example.com']);
  });

  it('is empty when nothing intersects (the route does not attach to that listener)', () => {
    expect(effectiveHostnames('api.example.com', ['www.example.com'])).toEqual([]);
  });
});
