/** Gateway API style conditions: one builder for every kind, and the merge that keeps transition times. */
export type ConditionStatus = 'True' | 'False' | 'Unknown';

export interface Condition {
  type: string;
  status: ConditionStatus;
  reason: string;
  message: string;
  observedGeneration?: number;
  lastTransitionTime?: string;
}

export function condition(
  type: string,
  status: boolean | ConditionStatus,
  reason: string,
  message: string,
  observedGeneration?: number,
): Condition {
  const s: ConditionStatus = typeof status === 'boolean' ? (status ? 'True' : 'False') : status;
  const c: Condition = { type, status: s, reason, message };
  if (observedGeneration !== undefined) c.observedGeneration = observedGeneration;
  return c;
}

/**
 * Stamps lastTransitionTime: kept from the previous condition of the same type when its status
 * did not change (Gateway API / metav1.Condition convention), `now` otherwise.
 */
export function withTransitionTimes(next: Condition[], previous: Condition[] | undefined, now: string): Condition[] {
  return next.map((c) => {
    const before = previous?.find((p) => p.type === c.type);
    const lastTransitionTime = before && before.status === c.status && before.lastTransitionTime ? before.lastTransitionTime : now;
    return { ...c, lastTransitionTime };
  });
}
