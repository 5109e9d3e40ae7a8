import { describe, expect, it } from 'vitest';
import { keysWithheldReason } from '../../src/ai-extension/credentials.js';
import { identityOfTcpCall, roleOfSubjectAltName } from '../../src/xds/identity.js';
import { mayReceive } from '../../src/xds/access.js';
import { TypeUrl } from '../../src/envoy/resources.js';
import * as grpc from '@grpc/grpc-js';

describe('stream identity', () => {
  it('reads the role from a verified certificate, and nothing else from anything else', () => {
    expect(identityOfTcpCall({})).toEqual({ role: 'anonymous', via: 'plaintext' });
    expect(identityOfTcpCall({ transportSecurityType: 'ssl' })).toEqual({ role: 'anonymous', via: 'tls' });
    expect(identityOfTcpCall({ transportSecurityType: 'ssl', sslPeerCertificate: { subjectaltname: 'DNS:x, URI:spiffe://switchyard.dev/role/envoy' } })).toEqual({ role: 'envoy', via: 'mtls' });
    expect(identityOfTcpCall({ transportSecurityType: 'ssl', sslPeerCertificate: { subjectaltname: 'DNS:switchyard-ai-extension' } })).toEqual({ role: 'anonymous', via: 'mtls' });
    // A certificate without SAN at all.
    expect(identityOfTcpCall({ transportSecurityType: 'ssl', sslPeerCertificate: {} as { subjectaltname: string } })).toEqual({ role: 'anonymous', via: 'mtls' });
  });

  it.each([
    ['URI:spiffe://switchyard.dev/role/ai-extension', 'ai-extension'],
    ['DNS:a.svc, URI:spiffe://switchyard.dev/role/controller', 'controller'],
    ['URI:spiffe://switchyard.dev/role/ai-extension, URI:spiffe://switchyard.dev/role/envoy', undefined],
    ['URI:spiffe://switchyard.dev/role/ai-extension, URI:spiffe://switchyard.dev/role/ai-extension', 'ai-extension'],
    ['URI:spiffe://switchyard.dev/role/root', undefined],
    ['URI:spiffe://switchyard.dev/role/ai-extension/x', undefined],
    ['URI:spiffe://evil.example/role/ai-extension', undefined],
    ['URI:"spiffe://switchyard.dev/role/envoy, URI:spiffe://switchyard.dev/role/ai-extension"', undefined],
    ['DNS:spiffe://switchyard.dev/role/ai-extension', undefined],
    ['email:x@y, URI:spiffe://switchyard.dev/role/ai-extensionx', undefined],
  ])('subjectAltName %s names role %s', (san, role) => {
    expect(roleOfSubjectAltName(san)).toBe(role);
  });

  it('withholds provider credentials from every identity but ai-extension, and nothing else', () => {
    for (const role of ['anonymous', 'envoy', 'controller'] as const) {
      expect(mayReceive({ role, via: 'mtls' }, TypeUrl.secret, 'credential/ai/k')).toBe(false);
      expect(mayReceive({ role, via: 'mtls' }, TypeUrl.secret, 'certificate/ai/tls')).toBe(true);
      expect(mayReceive({ role, via: 'mtls' }, TypeUrl.cluster, 'credential/ai/k')).toBe(true);
    }
    expect(mayReceive({ role: 'ai-extension', via: 'unix-socket' }, TypeUrl.secret, 'credential/ai/k')).toBe(true);
  });

  it('tells a standalone extension why no key will come, and what to do', () => {
    expect(keysWithheldReason({ socket: '/x' })).toBeUndefined();
    expect(keysWithheldReason({ host: 'h', port: 1 })).toMatch(/plaintext TCP.*--xds-tls-dir.*spiffe:\/\/switchyard.dev\/role\/ai-extension/);
    const tls = grpc.credentials.createSsl();
    expect(keysWithheldReason({ host: 'h', port: 1, credentials: tls })).toMatch(/no client certificate naming a role/);
    expect(keysWithheldReason({ host: 'h', port: 1, credentials: tls, certificateRole: 'envoy' })).toMatch(/of role envoy/);
    expect(keysWithheldReason({ host: 'h', port: 1, credentials: tls, certificateRole: 'ai-extension' })).toBeUndefined();
  });
});
