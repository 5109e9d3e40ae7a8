import { shortNackReason } from '../status/programmed.js';

/** A unit Envoy rejected: the content it was rejected with, by which Envoy, and why (one line). */
export interface Culprit {
  fingerprint: string;
  node: string;
  reason: string;
}

/**
 * The search both quarantines share (HTTPRoutes in the route type, named resources in the other
 * types): which changed unit made Envoy NACK, held out until it changes.
 *
 * - On a NACK the caller gives the suspects: the units whose content differs between the rejected
 *   version and the one that Envoy last accepted. Those Envoy's message names are the culprits;
 *   if it names none, one suspect is the culprit.
 * - Several unnamed suspects are all held out (pending), and each ACK of what is then served
 *   re-admits the next one alone, so the NACK that follows a re-admission has one suspect.
 *   Probing costs nothing to traffic: Envoy keeps what it accepted through a NACK.
 * - A culprit is re-admitted when its content changes or it disappears.
 */
export class CulpritSearch {
  private readonly culprits = new Map<string, Culprit>();
  private pending: string[] = [];
  /** The last change was made to re-admit a pending unit. */
  private admittingUnit = false;

  /**
   * Before each serve, with each unit's current content (undefined: gone): culprits that changed
   * or left are let in again. Only held units are asked for.
   */
  refresh(fingerprint: (key: string) => string | undefined): void {
    for (const [key, c] of this.culprits) if (fingerprint(key) !== c.fingerprint) this.culprits.delete(key);
    this.pending = this.pending.filter((k) => fingerprint(k) !== undefined);
  }

  /** Culprits and pending suspects: what is not served as translated. */
  held(): ReadonlySet<string> {
    return new Set([...this.culprits.keys(), ...this.pending]);
  }

  culprit(key: string): Culprit | undefined {
    return this.culprits.get(key);
  }

  isPending(key: string): boolean {
    return this.pending.includes(key);
  }

  allCulprits(): ReadonlyMap<string, Culprit> {
    return this.culprits;
  }

  /** True while a pending unit was just let in and its outcome is awaited. */
  get admitting(): boolean {
    return this.admittingUnit && this.pending.length > 0;
  }

  get searching(): boolean {
    return this.pending.length > 0;
  }

  /**
   * Envoy `node` rejected a version: `suspects` (unit → content) changed since what it last
   * accepted; `named` says whether Envoy's message names a unit. True when what is served changes.
   */
  rejected(node: string, suspects: ReadonlyMap<string, string>, message: string, named: (key: string) => boolean): boolean {
    const open = [...suspects.keys()].filter((k) => !this.culprits.has(k));
    const namedOnes = open.filter(named);
    const chosen = namedOnes.length > 0 ? namedOnes : open;
    if (chosen.length === 0) return false;
    this.admittingUnit = false;
    if (namedOnes.length === 0 && chosen.length > 1) {
      this.pending = [...new Set([...this.pending, ...chosen])];
      return true;
    }
    const reason = shortNackReason(message);
    for (const key of chosen) this.culprits.set(key, { fingerprint: suspects.get(key) ?? '', node, reason });
    this.pending = this.pending.filter((k) => !chosen.includes(k));
    return true;
  }

  /** What was served with the pending units held out was accepted (or changed nothing): the next one goes in alone. */
  admitNext(): boolean {
    if (this.pending.length === 0) return false;
    this.pending.shift();
    this.admittingUnit = true;
    return true;
  }
}

/**
 * Whether Envoy's error_detail names `name`: as a whole name, not as the prefix of a longer one
 * ("ai/chat" is not named by "ai/chat-2: ..."). Names hold "/", ".", "-" and ":", so a name's
 * edge is any other character.
 */
export function namesResource(message: string, name: string): boolean {
  let at = message.indexOf(name);
  while (at >= 0) {
    const before = at === 0 ? '' : (message[at - 1] ?? '');
    const after = message[at + name.length] ?? '';
    if (!/[\w./-]/.test(before) && !/[\w/-]/.test(after) && !(after === '.' && /[\w]/.test(message[at + name.length + 1] ?? ''))) return true;
    at = message.indexOf(name, at + 1);
  }
  return false;
}
