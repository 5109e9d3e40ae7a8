/**
 * The data key of the drill key Secret. A module of its own, without zod: `switchyard` prints it
 * in drill's usage without loading the Backend schema.
 */
export const DRILL_KEY = 'key';
