import { describe, expect, it } from 'vitest';
import { TypeUrl } from '../../src/envoy/resources.js';
import { AckLedger } from '../../src/xds/ack-ledger.js';

const CDS = TypeUrl.cluster;
const everyone = (): boolean => true;
const nobody = (): boolean => false;

describe('AckLedger: the fleet\'s ACK state per view version', () => {
  it('is ACKed once one Envoy ACKs the view\'s current version, and no longer once the view moves on', () => {
    const ledger = new AckLedger();
    ledger.ack('ai/gw', CDS, 'v1', 'envoy-a');
    expect(ledger.state('ai/gw', CDS, 'v1')).toEqual({ acked: true, version: 'v1', held: new Set(['v1']), rejected: [] });
    expect(ledger.state('ai/gw', CDS, 'v2')?.acked).toBe(false);
    ledger.moved('ai/gw', CDS, 'v2', everyone);
    expect(ledger.state('ai/gw', CDS, 'v2')?.acked).toBe(false);
    // Its Envoys run v1 meanwhile.
    expect(ledger.state('ai/gw', CDS, 'v2')?.held).toEqual(new Set(['v1']));
    ledger.ack('ai/gw', CDS, 'v2', 'envoy-b');
    expect(ledger.state('ai/gw', CDS, 'v2')?.acked).toBe(true);
    expect(ledger.state('ai/gw', CDS, 'v2')?.held).toEqual(new Set(['v2']));
    expect(ledger.state('other', CDS, 'v2')).toBeUndefined();
  });

  it('counts a change only when what status reads changes: a thousand ACKs of one version are one', () => {
    const ledger = new AckLedger();
    for (let i = 0; i < 1000; i++) ledger.ack('', CDS, 'v1', `envoy-${i}`);
    expect(ledger.changes).toBe(1);
  });

  it('keeps a NACK until that Envoy ACKs, through other versions, and drops it when the view moves on without that Envoy', () => {
    const ledger = new AckLedger();
    ledger.nack('', CDS, 'v1', 'envoy-a', 'bad cluster', 'a1');
    ledger.ack('', CDS, 'v1', 'envoy-b');
    expect(ledger.state('', CDS, 'v1')).toEqual({ acked: true, version: 'v1', held: new Set(['v1']), rejected: [{ nodeId: 'envoy-a', message: 'bad cluster' }] });
    ledger.moved('', CDS, 'v2', everyone);
    expect(ledger.state('', CDS, 'v2')?.rejected).toHaveLength(1);
    ledger.ack('', CDS, 'v2', 'envoy-a');
    expect(ledger.state('', CDS, 'v2')?.rejected).toEqual([]);
    ledger.nack('', CDS, 'v2', 'envoy-a', 'bad again', 'a2');
    ledger.moved('', CDS, 'v3', nobody);
    expect(ledger.state('', CDS, 'v3')?.rejected).toEqual([]);
  });

  it('keeps a NACK while that Envoy is sent the very version it rejected again (a reconnect), and drops it once it is sent another', () => {
    const ledger = new AckLedger();
    ledger.nack('', CDS, 'v1', 'envoy-a', 'bad cluster', 'a1');
    ledger.sent('', CDS, 'envoy-a', 'a1');
    expect(ledger.state('', CDS, 'v1')?.rejected).toEqual([{ nodeId: 'envoy-a', message: 'bad cluster' }]);
    ledger.sent('', CDS, 'envoy-a', 'a2');
    expect(ledger.state('', CDS, 'v1')?.rejected).toEqual([]);
  });

  it('is ACKed at once when the view goes back to the version the fleet last ACKed (the quarantine holding back a rejected change), and not for an older one', () => {
    const ledger = new AckLedger();
    const SDS = TypeUrl.secret;
    ledger.ack('ai/gw', SDS, 'v1', 'envoy-a');
    ledger.moved('ai/gw', SDS, 'v2', everyone);
    ledger.nack('ai/gw', SDS, 'v2', 'envoy-a', 'weak key', 'a2');
    expect(ledger.state('ai/gw', SDS, 'v2')).toEqual({ acked: false, version: 'v2', held: new Set(['v1']), rejected: [{ nodeId: 'envoy-a', message: 'weak key' }] });
    const before = ledger.changes;
    ledger.moved('ai/gw', SDS, 'v1', everyone);
    expect(ledger.state('ai/gw', SDS, 'v1')?.acked).toBe(true);
    expect(ledger.changes).toBe(before + 1);
    // The Envoy moved on to v3 after all: v1 is no longer what it runs.
    ledger.moved('ai/gw', SDS, 'v3', everyone);
    ledger.ack('ai/gw', SDS, 'v3', 'envoy-a');
    ledger.moved('ai/gw', SDS, 'v1', everyone);
    expect(ledger.state('ai/gw', SDS, 'v1')?.acked).toBe(false);
  });
});
