import { z } from 'zod';

export { MODEL_HEADER, MODELS_PATH } from './model-http.js';

const ModelName = z.string().min(1, 'a model name cannot be empty').max(256, 'a model name is at most 256 characters');

const MAX_ALIASES = 64;

/** alias → model name. maxProperties bounds the CRD's CEL cost as well as the endpoint metadata. */
export const ModelAliases = z.record(ModelName, ModelName)
  .refine((aliases) => Object.keys(aliases).length <= MAX_ALIASES, `at most ${MAX_ALIASES} model aliases`)
  .meta({ maxProperties: MAX_ALIASES });
export type ModelAliases = z.infer<typeof ModelAliases>;

export function modelAliasesOf(description: string): typeof ModelAliases {
  return ModelAliases.describe(description);
}
