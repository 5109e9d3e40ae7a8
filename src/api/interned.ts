/**
 * The internalized copy of `text`: V8 keeps one copy of each such string for the whole process,
 * so every holder of an equal text holds the same string. The yaml package's scalars are slices
 * of their document's text, and a slice keeps that whole text alive: without this, a loaded
 * configuration would keep its entire source in memory, and one copy per document of every
 * repeated value (namespace, apiVersion, kind, provider names).
 * A property key is always internalized, and Object.keys hands it back. The object has no
 * prototype, so V8 keeps it as a dictionary: a literal `{ [text]: 0 }` would create a hidden
 * class per distinct key, garbage that raised the load's peak by a tenth.
 */
export function interned(text: string): string {
  INTERNING[text] = 0;
  const key = Object.keys(INTERNING)[0];
  delete INTERNING[text];
  return key ?? text;
}

/**
 * The one holder interned uses, empty between calls: a new dictionary per string cost a third of
 * the provider's CPU at the first load of 10,000 Backends (2.4 million strings).
 */
const INTERNING: Record<string, number> = Object.create(null) as Record<string, number>;
