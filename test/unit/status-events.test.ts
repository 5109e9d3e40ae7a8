import { afterEach, describe, expect, it } from 'vitest';
import { EventRecorder, type EventRecorderOptions } from '../../src/status/events.js';
import type { ObjectRef } from '../../src/status/kinds.js';
import type { WarningEvent } from '../../src/translate/status.js';
import { sleep } from '../support/wait.js';
import { FakeEvents, FakeObjects, quietLogger } from './status-fakes.js';

const chat: ObjectRef = { kind: 'Backend', namespace: 'ai', name: 'chat' };
const missing: WarningEvent = { object: { kind: 'Backend', namespace: 'ai', name: 'chat' }, reason: 'SecretNotFound', message: 'member openai: Secret ai/openai-key not found' };

const recorders: EventRecorder[] = [];
function setup(opts: Partial<EventRecorderOptions> = {}): { objects: FakeObjects; events: FakeEvents; recorder: EventRecorder } {
  const objects = new FakeObjects();
  objects.put(chat, { metadata: { uid: 'uid-chat' } });
  const events = new FakeEvents();
  const recorder = new EventRecorder({ events, objects, logger: quietLogger, instance: 'replica-a', ...opts });
  recorders.push(recorder);
  return { objects, events, recorder };
}
afterEach(async () => {
  await Promise.all(recorders.splice(0).map((r) => r.stop()));
});

describe('EventRecorder', () => {
  it('records a Warning Event on the object, named by uid and resourceVersion, with the controller as reporter', async () => {
    const { objects, events, recorder } = setup();
    recorder.setLeading(true);
    recorder.record([missing]);
    await recorder.idle();
    expect(events.creates).toBe(1);
    const [event] = [...events.events.values()];
    expect(event).toMatchObject({
      metadata: { namespace: 'ai' },
      type: 'Warning',
      reason: 'SecretNotFound',
      message: missing.message,
      count: 1,
      involvedObject: { apiVersion: 'switchyard.dev/v1alpha1', kind: 'Backend', namespace: 'ai', name: 'chat', uid: 'uid-chat', resourceVersion: objects.read(chat)?.metadata.resourceVersion },
      reportingComponent: 'switchyard.dev/gateway-controller',
      reportingInstance: 'replica-a',
      source: { component: 'switchyard-controller', host: 'replica-a' },
    });
    expect(event?.metadata.name).toMatch(/^chat\.[0-9a-f]{16}$/);
  });

  it('does not re-emit a warning while it persists across translations', async () => {
    const { events, recorder } = setup();
    recorder.setLeading(true);
    for (let i = 0; i < 5; i++) {
      recorder.record([missing]);
      await recorder.idle();
    }
    expect(events.creates + events.replaces).toBe(1);
  });

  it('bumps count and lastTimestamp of the same Event when the problem comes back, at most once per interval', async () => {
    const { events, recorder } = setup({ repeatIntervalMs: 200 });
    recorder.setLeading(true);
    recorder.record([missing]);
    await recorder.idle();
    const firstAt = Date.now();
    // Gone, back, gone, back: two appearances inside the interval.
    for (const set of [[], [missing], [], [missing]]) recorder.record(set);
    expect(events.replaces).toBe(0);
    await recorder.idle();
    expect(Date.now() - firstAt).toBeGreaterThanOrEqual(150);
    expect(events.creates).toBe(1);
    expect(events.replaces).toBe(1);
    const [event] = [...events.events.values()];
    expect(event?.count).toBe(3);
    expect(recorder.counters()).toMatchObject({ created: 1, bumped: 1, suppressed: 2 });
  });

  it('writes nothing while not leading; a new leader adopts an Event an earlier leader created instead of duplicating it', async () => {
    const { objects, events, recorder } = setup();
    recorder.record([missing]);
    await recorder.idle();
    expect(events.creates).toBe(0);
    recorder.setLeading(true);
    await recorder.idle();
    expect(events.creates).toBe(1);

    const successor = new EventRecorder({ events, objects, logger: quietLogger, instance: 'replica-b' });
    recorders.push(successor);
    successor.record([missing]);
    successor.setLeading(true);
    await successor.idle();
    expect(successor.counters()).toMatchObject({ created: 0, bumped: 0, errors: 0 });
    expect(events.events.size).toBe(1);
    expect([...events.events.values()][0]?.count).toBe(1);
  });

  it('gives distinct problems on one object distinct Events', async () => {
    const { events, recorder } = setup();
    recorder.setLeading(true);
    recorder.record([missing, { ...missing, reason: 'SecretKeyMissing', message: 'member azure: Secret ai/azure-key has no key "Authorization"' }]);
    await recorder.idle();
    expect(events.creates).toBe(2);
  });

  it('retries a report the API server refused', async () => {
    const { events, recorder } = setup();
    events.failCreates = 1;
    recorder.setLeading(true);
    recorder.record([missing]);
    await recorder.idle();
    expect(recorder.counters()).toMatchObject({ created: 1, errors: 1 });
    expect(events.events.size).toBe(1);
  });

  it('skips objects that are gone', async () => {
    const { events, recorder } = setup();
    recorder.setLeading(true);
    recorder.record([{ ...missing, object: { ...missing.object, name: 'deleted' } }]);
    await recorder.idle();
    expect(events.creates).toBe(0);
    expect(recorder.counters().errors).toBe(0);
  });
  it('keeps an appearance that comes while the Event is being written, and bumps the Event for it', async () => {
    const { events, recorder } = setup({ repeatIntervalMs: 50 });
    const create = events.create.bind(events);
    let flapped = false;
    events.create = async (event) => {
      if (!flapped) {
        flapped = true;
        // The problem goes away and comes back while the first report is in flight.
        recorder.record([]);
        recorder.record([missing]);
      }
      return create(event);
    };
    recorder.setLeading(true);
    recorder.record([missing]);
    await recorder.idle();
    await sleep(100);
    await recorder.idle();
    expect(events.creates).toBe(1);
    expect(events.replaces).toBe(1);
    expect([...events.events.values()][0]?.count).toBe(2);
  });
});
