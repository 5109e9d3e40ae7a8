import { z } from 'zod';

/**
 * The request header that carries the `model` of an OpenAI-style JSON body, set by the Gateway
 * before a route is chosen (a client's own header of this name is removed first). HTTPRoute rules
 * route by model with an ordinary `headers` match on it.
 */
export const MODEL_HEADER = 'x-switchyard-model';

/** The path a Gateway answers with the models it serves, in OpenAI's list format. */
export const MODELS_PATH = '/v1/models';

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
