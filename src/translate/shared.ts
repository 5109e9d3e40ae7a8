/**
 * One frozen copy of each value translation keeps many equal copies of: the conditions and
 * member lists of Backend statuses, retry plans, outlier detection. At 10,000 Backends nearly
 * every Backend has the same three conditions and the same retry plan; a copy each cost tens of
 * MiB for as long as the configuration is served. Values are told apart by their JSON, key order
 * included, so a shared value serialises byte for byte as the copy it replaces. Frozen: a value
 * many objects hold must not be edited through one of them (an edit throws in strict mode).
 */

/**
 * Distinct values remembered at most; past that the table starts afresh. A configuration has
 * few distinct shapes, but values that name their object (a condition message with the object's
 * name) are distinct each: they must not grow the table for as long as the process runs.
 */
const MAX_VALUES = 8192;

let byJson = new Map<string, unknown>();

/** `value`'s shared copy: the first equal value met (frozen), else `value` itself, frozen from now on. */
export function shared<T extends object>(value: T): T {
  const json = JSON.stringify(value);
  const known = byJson.get(json);
  if (known !== undefined) return known as T;
  if (byJson.size >= MAX_VALUES) byJson = new Map();
  byJson.set(json, deepFreeze(value));
  return value;
}

function deepFreeze<T>(value: T): T {
  if (typeof value !== 'object' || value === null || Object.isFrozen(value)) return value;
  for (const item of Object.values(value)) deepFreeze(item);
  return Object.freeze(value);
}
