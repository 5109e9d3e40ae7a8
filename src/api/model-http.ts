/**
 * How a Gateway names models over HTTP. A module of its own, without zod, so that the AI extension
 * reads the model header without loading the schemas (src/api/models.ts re-exports both).
 */

/**
 * The request header that carries the `model` of an OpenAI-style JSON body, set by the Gateway
 * before a route is chosen (a client's own header of this name is removed first). HTTPRoute rules
 * route by model with an ordinary `headers` match on it.
 */
export const MODEL_HEADER = 'x-switchyard-model';

/** The path a Gateway answers with the models it serves, in OpenAI's list format. */
export const MODELS_PATH = '/v1/models';
