import { expect } from 'vitest';
import type { LeaseCall } from '../unit/status-fakes.js';

/**
 * Judging a takeover by the successor's own tries on the Lease (recorded by RecordingLeases)
 * instead of by the wall clock: on a loaded machine every try of every replica is late alike,
 * so "within N ms" fails there while the order of the tries still says whether the elector did
 * the right thing. Each check fails on the elector broken in the way it names.
 */

function dump(calls: LeaseCall[]): string {
  return JSON.stringify(calls.map((c) => ({ op: c.op, ok: c.ok, holder: c.holder ?? c.result?.holderIdentity, rv: c.result?.resourceVersion, startedAt: Math.round(c.startedAt), endedAt: Math.round(c.endedAt) })));
}

/** The call that made `identity` the holder: its first successful create or replace naming it. */
export function takeoverIndex(calls: LeaseCall[], identity: string): number {
  const at = calls.findIndex((c) => c.op !== 'get' && c.ok && c.holder === identity);
  if (at < 1) throw new Error(`${identity} never took the Lease after a read of it: ${dump(calls)}`);
  return at;
}

/**
 * A released Lease (empty holder) is taken at the successor's first try after the release: its
 * first read that found the holder empty is followed at once by its write that took it, and
 * every read before found `previous` holding it (it did not take a held Lease). Broken by an
 * elector that treats an empty holder as held (it waits a lease duration and declines reads meanwhile).
 */
export function expectTookReleasedLeaseAtOnce(calls: LeaseCall[], identity: string, previous: string): void {
  const took = takeoverIndex(calls, identity);
  const sawRelease = calls.findIndex((c) => c.op === 'get' && c.ok && c.result?.holderIdentity === '');
  expect(sawRelease, `${identity}'s read of the released Lease: ${dump(calls)}`).toBeGreaterThanOrEqual(0);
  expect(took, `${identity} took the Lease at its first try after it saw the release: ${dump(calls)}`).toBe(sawRelease + 1);
  const before = calls.slice(0, sawRelease).filter((c) => c.ok);
  expect(before.length, `${identity} read the Lease while ${previous} held it: ${dump(calls)}`).toBeGreaterThan(0);
  for (const c of before) expect(c, `${identity}'s tries before the release: ${dump(calls)}`).toMatchObject({ op: 'get', result: { holderIdentity: previous } });
}

/**
 * A Lease its holder stopped renewing (killed, no release) is taken once it has run out, and at
 * the successor's first try after that. The successor counts the lease duration from the read in
 * which it first saw the last renewal (its own clock; the holder's timestamps are never trusted):
 * a moment between that read's endedAt and its settledAt. Not before: the write that took the
 * Lease began at least `leaseMs` after that read returned (broken by an elector that counts from
 * the Lease's renewTime or takes over early). Not later than its first try after: every read that
 * declined returned before the lease had run out (broken by one that waits longer).
 * Returns how long after that read the takeover began.
 */
export function expectTookExpiredLease(calls: LeaseCall[], identity: string, previous: string, leaseMs: number): number {
  const took = takeoverIndex(calls, identity);
  const replaced = calls[took - 1];
  expect(replaced, `the read before ${identity}'s takeover, of ${previous}'s last renewal: ${dump(calls)}`).toMatchObject({ op: 'get', ok: true, result: { holderIdentity: previous } });
  const rv = replaced?.result?.resourceVersion;
  const sawAt = calls.findIndex((c) => c.op === 'get' && c.ok && c.result?.resourceVersion === rv);
  const seen = calls[sawAt];
  const takeover = calls[took];
  if (!seen || seen.settledAt === undefined || !takeover) throw new Error(`${identity} never settled after reading ${previous}'s last renewal: ${dump(calls)}`);
  const waited = takeover.startedAt - seen.endedAt;
  expect(waited, `${identity} took the Lease ${Math.round(waited)} ms after it first saw ${previous}'s last renewal: ${dump(calls)}`).toBeGreaterThanOrEqual(leaseMs);
  const declined = calls.slice(sawAt, took - 1).filter((c) => c.ok);
  for (const c of declined) {
    expect(c, `${identity}'s reads while ${previous}'s lease ran: ${dump(calls)}`).toMatchObject({ op: 'get', result: { resourceVersion: rv, holderIdentity: previous } });
    expect(c.endedAt - seen.settledAt, `${identity} declined a read that returned after the lease had run out: ${dump(calls)}`).toBeLessThan(leaseMs);
  }
  return waited;
}
