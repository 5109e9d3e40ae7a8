import { crc32 } from 'node:zlib';

/**
 * AWS event stream framing (application/vnd.amazon.eventstream, what Bedrock's converse-stream
 * answers with): each message is a 12-byte prelude (total length, headers length, CRC32 of the
 * two), headers, a payload and a CRC32 of everything before it. Bytes arrive split anywhere.
 */

export interface EventStreamMessage {
  /** String headers (`:event-type`, `:message-type`, `:exception-type`, `:content-type`). */
  headers: Record<string, string>;
  payload: Buffer;
}

const PRELUDE = 12;
/** AWS caps a message at 16 MiB; a larger length means the stream is not what we think it is. */
const MAX_MESSAGE = 16 * 1024 * 1024;

/** Value sizes of the non-string header types (AWS event stream encoding, types 0-9). */
const FIXED_SIZE: Record<number, number> = { 0: 0, 1: 0, 2: 1, 3: 2, 4: 4, 5: 8, 8: 8, 9: 16 };

export class EventStreamDecoder {
  private buffer = Buffer.alloc(0);
  private broken: string | undefined;

  /** Why decoding stopped (a bad CRC, a bad length), if it did: the stream cannot be trusted after. */
  get error(): string | undefined {
    return this.broken;
  }

  push(bytes: Uint8Array): EventStreamMessage[] {
    if (this.broken !== undefined) return [];
    this.buffer = this.buffer.length === 0 ? Buffer.from(bytes) : Buffer.concat([this.buffer, bytes]);
    const out: EventStreamMessage[] = [];
    while (this.buffer.length >= PRELUDE) {
      const total = this.buffer.readUInt32BE(0);
      const headersLength = this.buffer.readUInt32BE(4);
      if (crc32(this.buffer.subarray(0, 8)) !== this.buffer.readUInt32BE(8)) return this.fail('prelude CRC mismatch', out);
      if (total < PRELUDE + 4 + headersLength || total > MAX_MESSAGE) return this.fail(`impossible message length ${total}`, out);
      if (this.buffer.length < total) break;
      const message = this.buffer.subarray(0, total);
      this.buffer = this.buffer.subarray(total);
      if (crc32(message.subarray(0, total - 4)) !== message.readUInt32BE(total - 4)) return this.fail('message CRC mismatch', out);
      const headers = parseHeaders(message.subarray(PRELUDE, PRELUDE + headersLength));
      if (headers === undefined) return this.fail('malformed headers', out);
      out.push({ headers, payload: Buffer.from(message.subarray(PRELUDE + headersLength, total - 4)) });
    }
    return out;
  }

  /** Bytes left over at the end of the stream (a message cut short). */
  get pending(): number {
    return this.buffer.length;
  }

  private fail(reason: string, out: EventStreamMessage[]): EventStreamMessage[] {
    this.broken = reason;
    this.buffer = Buffer.alloc(0);
    return out;
  }
}

function parseHeaders(bytes: Buffer): Record<string, string> | undefined {
  const headers: Record<string, string> = {};
  let at = 0;
  while (at < bytes.length) {
    const nameLength = bytes.readUInt8(at);
    at += 1;
    if (at + nameLength + 1 > bytes.length) return undefined;
    const name = bytes.toString('utf8', at, at + nameLength);
    at += nameLength;
    const type = bytes.readUInt8(at);
    at += 1;
    if (type === 6 || type === 7) {
      // 6: bytes, 7: string, both with a 2-byte length.
      if (at + 2 > bytes.length) return undefined;
      const length = bytes.readUInt16BE(at);
      at += 2;
      if (at + length > bytes.length) return undefined;
      if (type === 7) headers[name] = bytes.toString('utf8', at, at + length);
      at += length;
      continue;
    }
    const size = FIXED_SIZE[type];
    if (size === undefined || at + size > bytes.length) return undefined;
    at += size;
  }
  return headers;
}
