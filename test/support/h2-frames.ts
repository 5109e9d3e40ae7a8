/**
 * Raw HTTP/2 bytes for tests that play a client no library would be (RFC 9113): the connection
 * preface, frame types, and one frame with its 9-byte header.
 */

export const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

export const H2_FRAME = { DATA: 0, HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8, CONTINUATION: 9 } as const;

/** One frame: 24-bit length, type, flags, 31-bit stream id, then the payload. */
export function h2Frame(type: number, flags: number, stream: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(stream, 5);
  return Buffer.concat([head, payload]);
}

/** One HTTP/2 frame as read back from a server's bytes. */
export interface H2ReadFrame {
  type: number;
  flags: number;
  stream: number;
  payload: Buffer;
}

/** The whole frames in `data`, in order; a trailing partial frame is left out. */
export function parseFrames(data: Buffer): H2ReadFrame[] {
  const frames: H2ReadFrame[] = [];
  let at = 0;
  while (data.length - at >= 9 && data.length - at >= 9 + data.readUIntBE(at, 3)) {
    const length = data.readUIntBE(at, 3);
    frames.push({ type: data[at + 3]!, flags: data[at + 4]!, stream: data.readUInt32BE(at + 5) & 0x7fffffff, payload: data.subarray(at + 9, at + 9 + length) });
    at += 9 + length;
  }
  return frames;
}
