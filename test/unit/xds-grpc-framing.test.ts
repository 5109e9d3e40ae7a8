import { describe, expect, it } from 'vitest';
import { framed, sharedFraming } from '../../src/xds/grpc-framing.js';

describe('shared gRPC framing', () => {
  it('is active with the grpc-js this project pins (a grpc-js without the hook would copy every response per stream)', () => {
    expect(sharedFraming()).toBe(true);
  });

  it('frames a message once, with the gRPC length prefix, and hands back the same Buffer for it every time', () => {
    const message = Buffer.from('a response body');
    const frame = framed(message);
    expect(frame.subarray(0, 5)).toEqual(Buffer.from([0, 0, 0, 0, message.length]));
    expect(frame.subarray(5)).toEqual(message);
    expect(framed(message)).toBe(frame);
    expect(framed(Buffer.from('a response body'))).not.toBe(frame);
  });
});
