import type { AttemptTarget } from './attempt.js';

/**
 * The model this attempt's member is sent for the client's: the member's alias for it, else the
 * member's own model, else (undefined) the client's unchanged.
 */
export function modelForAttempt(target: Pick<AttemptTarget, 'model' | 'modelAliases'>, asked: unknown): string | undefined {
  if (typeof asked === 'string' && target.modelAliases !== undefined && Object.hasOwn(target.modelAliases, asked)) return target.modelAliases[asked];
  return target.model;
}
