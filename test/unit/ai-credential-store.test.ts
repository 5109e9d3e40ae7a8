import { describe, expect, it } from 'vitest';
import { CredentialStore } from '../../src/ai-extension/credentials.js';
import { silentLogger } from '../../src/observability/logger.js';

describe('CredentialStore.resolve', () => {
  it('lets many attempts wait for a credential at once without a listener-leak warning', async () => {
    const store = new CredentialStore({ nodeId: 'test', logger: silentLogger() });
    const warnings: Error[] = [];
    const onWarning = (w: Error): void => {
      warnings.push(w);
    };
    process.on('warning', onWarning);
    try {
      // A burst of requests while the controller is unreachable: each attempt waits for the key.
      const waits = Array.from({ length: 25 }, () => store.resolve('credential/ai/openai-key', 20));
      expect(await Promise.all(waits)).toEqual(Array(25).fill(undefined));
      await new Promise((resolve) => setImmediate(resolve));
    } finally {
      process.off('warning', onWarning);
      await store.stop();
    }
    expect(warnings.map((w) => w.name)).not.toContain('MaxListenersExceededWarning');
  });
});
