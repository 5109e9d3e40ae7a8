import { z } from 'zod';
import { ObjectMeta } from './meta.js';

/** Label Kubernetes puts on every Namespace (1.21+): selectors can always name a namespace by it. */
export const NAMESPACE_NAME_LABEL = 'kubernetes.io/metadata.name';

export const LabelSelectorRequirement = z.object({
  key: z.string().min(1),
  operator: z.enum(['In', 'NotIn', 'Exists', 'DoesNotExist'], { message: 'operator is one of In, NotIn, Exists, DoesNotExist' }),
  values: z.array(z.string()).optional(),
}).superRefine((r, ctx) => {
  const needsValues = r.operator === 'In' || r.operator === 'NotIn';
  if (needsValues && (r.values ?? []).length === 0) {
    ctx.addIssue({ code: 'custom', path: ['values'], message: `operator ${r.operator} needs at least one value` });
  }
  if (!needsValues && (r.values ?? []).length > 0) {
    ctx.addIssue({ code: 'custom', path: ['values'], message: `operator ${r.operator} takes no values; remove them` });
  }
});

/** metav1.LabelSelector: every matchLabels pair and every matchExpressions requirement must hold. */
export const LabelSelector = z.object({
  matchLabels: z.record(z.string(), z.string()).optional(),
  matchExpressions: z.array(LabelSelectorRequirement).optional(),
});
export type LabelSelector = z.infer<typeof LabelSelector>;

/** True when `labels` satisfy the selector; an empty selector matches everything (Kubernetes semantics). */
export function selectorMatches(selector: LabelSelector, labels: Readonly<Record<string, string>>): boolean {
  for (const [key, value] of Object.entries(selector.matchLabels ?? {})) {
    if (labels[key] !== value) return false;
  }
  for (const r of selector.matchExpressions ?? []) {
    const has = Object.hasOwn(labels, r.key);
    const value = labels[r.key];
    switch (r.operator) {
      case 'In':
        if (!has || value === undefined || !(r.values ?? []).includes(value)) return false;
        break;
      case 'NotIn':
        if (has && value !== undefined && (r.values ?? []).includes(value)) return false;
        break;
      case 'Exists':
        if (!has) return false;
        break;
      case 'DoesNotExist':
        if (has) return false;
        break;
    }
  }
  return true;
}

/** A Namespace, read for its labels (Gateway listeners' `allowedRoutes.namespaces.from: Selector`). */
export const Namespace = z.object({
  apiVersion: z.literal('v1', { message: 'apiVersion is v1' }),
  kind: z.literal('Namespace'),
  metadata: ObjectMeta.extend({ namespace: z.string().default('') }),
});
export type Namespace = z.infer<typeof Namespace>;

/** A namespace's labels as selectors see them, including the name label the API server always sets. */
export function namespaceLabels(name: string, namespace: Namespace | undefined): Record<string, string> {
  return { ...(namespace?.metadata.labels ?? {}), [NAMESPACE_NAME_LABEL]: name };
}
