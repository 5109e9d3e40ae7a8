import { X509Certificate, createPrivateKey } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { issueCa, issueLeaf, needsIssue, renewalTime } from '../../src/xds/certificates.js';
import { roleOfSubjectAltName } from '../../src/xds/identity.js';

const NOW = new Date('2026-06-01T00:00:00Z');
const DAY = 24 * 60 * 60 * 1000;

describe('the xDS certificates Switchyard issues', () => {
  const ca = issueCa({ now: NOW });
  const controller = issueLeaf({ ca, role: 'controller', dnsNames: ['switchyard.switchyard-system.svc', 'switchyard.switchyard-system.svc.cluster.local'], now: NOW });
  const envoy = issueLeaf({ ca, role: 'envoy', now: NOW });

  it('issues a CA and leaves it signed, each naming its role (and the controller its Service)', () => {
    const caCert = new X509Certificate(ca.cert);
    expect(caCert.ca).toBe(true);
    for (const [pair, role] of [[controller, 'controller'], [envoy, 'envoy']] as const) {
      const cert = new X509Certificate(pair.cert);
      expect(cert.verify(caCert.publicKey)).toBe(true);
      expect(cert.ca).toBe(false);
      expect(cert.checkIssued(caCert)).toBe(true);
      expect(cert.checkPrivateKey(createPrivateKey(pair.key))).toBe(true);
      expect(roleOfSubjectAltName(cert.subjectAltName)).toBe(role);
    }
    expect(new X509Certificate(controller.cert).subjectAltName).toBe('URI:spiffe://switchyard.dev/role/controller, DNS:switchyard.switchyard-system.svc, DNS:switchyard.switchyard-system.svc.cluster.local');
    expect(new X509Certificate(controller.cert).checkHost('switchyard.switchyard-system.svc')).toBe('switchyard.switchyard-system.svc');
    expect(new X509Certificate(envoy.cert).checkHost('switchyard.switchyard-system.svc')).toBeUndefined();
    expect(createPrivateKey(envoy.key).asymmetricKeyType).toBe('rsa');
  });

  it('re-issues a leaf within the last third of its lifetime, or when the CA, role or names changed', () => {
    const expect_ = { ca: ca.cert, role: 'envoy' as const };
    expect(needsIssue(envoy.cert, NOW, expect_)).toBe(false);
    expect(needsIssue(envoy.cert, new Date(NOW.getTime() + 59 * DAY), expect_)).toBe(false);
    expect(needsIssue(envoy.cert, new Date(NOW.getTime() + 61 * DAY), expect_)).toBe(true);
    expect(renewalTime(envoy.cert).getTime()).toBeGreaterThan(NOW.getTime() + 59 * DAY);
    expect(renewalTime(envoy.cert).getTime()).toBeLessThan(NOW.getTime() + 61 * DAY);
    expect(needsIssue(envoy.cert, new Date(NOW.getTime() + 91 * DAY), expect_)).toBe(true);
    expect(needsIssue(envoy.cert, new Date(NOW.getTime() - DAY), expect_)).toBe(true);
    expect(needsIssue(envoy.cert, NOW, { ...expect_, role: 'ai-extension' })).toBe(true);
    expect(needsIssue(envoy.cert, NOW, { ca: issueCa({ now: NOW }).cert, role: 'envoy' })).toBe(true);
    expect(needsIssue(controller.cert, NOW, { ca: ca.cert, role: 'controller', dnsNames: ['switchyard.switchyard-system.svc'] })).toBe(true);
    expect(needsIssue(undefined, NOW)).toBe(true);
    expect(needsIssue('not a certificate', NOW)).toBe(true);
    expect(needsIssue(ca.cert, new Date(NOW.getTime() + 2000 * DAY))).toBe(false);
    expect(needsIssue(ca.cert, new Date(NOW.getTime() + 2500 * DAY))).toBe(true);
  });
});
