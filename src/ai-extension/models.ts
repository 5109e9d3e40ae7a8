import type { AttemptTarget } from './attempt.js';

/** Reads the member's aliases, sent as one JSON string in its endpoint metadata (src/envoy/clusters.ts). */
export function parseModelAliases(json: string | undefined): Record<string, string> | undefined {
  if (json === undefined) return undefined;
  try {
    const parsed: unknown = JSON.parse(json);
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return undefined;
    const out: Record<string, string> = {};
    for (const [alias, model] of Object.entries(parsed)) if (typeof model === 'string') out[alias] = model;
    return out;
  } catch {
    return undefined;
  }
}

/**
 * The model this attempt's member is sent for the client's: the member's alias for it, else the
 * member's own model, else (undefined) the client's unchanged.
 */
export function modelForAttempt(target: Pick<AttemptTarget, 'model' | 'modelAliases'>, asked: unknown): string | undefined {
  if (typeof asked === 'string' && target.modelAliases !== undefined && Object.hasOwn(target.modelAliases, asked)) return target.modelAliases[asked];
  return target.model;
}
