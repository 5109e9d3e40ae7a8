import type { ReferenceGrant } from './inputs.js';

/**
 * Gateway API cross-namespace rule: a reference from `from` (in fromNamespace) to an object in
 * another namespace needs a ReferenceGrant in the target namespace that names both sides.
 */
export function referencePermitted(
  grants: readonly ReferenceGrant[],
  from: { group: string; kind: string; namespace: string },
  to: { group: string; kind: string; namespace: string; name: string },
): boolean {
  if (from.namespace === to.namespace) return true;
  return grants.some(
    (g) =>
      g.metadata.namespace === to.namespace &&
      g.spec.from.some((f) => f.group === from.group && f.kind === from.kind && f.namespace === from.namespace) &&
      g.spec.to.some((t) => t.group === to.group && t.kind === to.kind && (t.name === undefined || t.name === '' || t.name === to.name)),
  );
}
