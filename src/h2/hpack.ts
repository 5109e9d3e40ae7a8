/**
 * HPACK (RFC 7541) for the extension's own HTTP/2 server (h2-connection.ts): a decoder of header
 * blocks with the dynamic table and Huffman-coded strings, since Envoy's encoder (nghttp2) uses
 * both; and fixed encodings of the few header blocks the server sends, which use neither.
 */

/** RFC 7541 Appendix A: index 1..61. */
const STATIC_TABLE: readonly (readonly [string, string])[] = [
  [':authority', ''], [':method', 'GET'], [':method', 'POST'], [':path', '/'], [':path', '/index.html'],
  [':scheme', 'http'], [':scheme', 'https'], [':status', '200'], [':status', '204'], [':status', '206'],
  [':status', '304'], [':status', '400'], [':status', '404'], [':status', '500'], ['accept-charset', ''],
  ['accept-encoding', 'gzip, deflate'], ['accept-language', ''], ['accept-ranges', ''], ['accept', ''],
  ['access-control-allow-origin', ''], ['age', ''], ['allow', ''], ['authorization', ''], ['cache-control', ''],
  ['content-disposition', ''], ['content-encoding', ''], ['content-language', ''], ['content-length', ''],
  ['content-location', ''], ['content-range', ''], ['content-type', ''], ['cookie', ''], ['date', ''], ['etag', ''],
  ['expect', ''], ['expires', ''], ['from', ''], ['host', ''], ['if-match', ''], ['if-modified-since', ''],
  ['if-none-match', ''], ['if-range', ''], ['if-unmodified-since', ''], ['last-modified', ''], ['link', ''],
  ['location', ''], ['max-forwards', ''], ['proxy-authenticate', ''], ['proxy-authorization', ''], ['range', ''],
  ['referer', ''], ['refresh', ''], ['retry-after', ''], ['server', ''], ['set-cookie', ''],
  ['strict-transport-security', ''], ['transfer-encoding', ''], ['user-agent', ''], ['vary', ''], ['via', ''],
  ['www-authenticate', ''],
];

/** RFC 7541 Appendix B: code and bit length of symbols 0..255 and EOS (256), in pairs. */
const HUFFMAN_CODES = [
  0x1ff8, 13, 0x7fffd8, 23, 0xfffffe2, 28, 0xfffffe3, 28, 0xfffffe4, 28, 0xfffffe5, 28, 0xfffffe6, 28, 0xfffffe7, 28,
  0xfffffe8, 28, 0xffffea, 24, 0x3ffffffc, 30, 0xfffffe9, 28, 0xfffffea, 28, 0x3ffffffd, 30, 0xfffffeb, 28, 0xfffffec, 28,
  0xfffffed, 28, 0xfffffee, 28, 0xfffffef, 28, 0xffffff0, 28, 0xffffff1, 28, 0xffffff2, 28, 0x3ffffffe, 30, 0xffffff3, 28,
  0xffffff4, 28, 0xffffff5, 28, 0xffffff6, 28, 0xffffff7, 28, 0xffffff8, 28, 0xffffff9, 28, 0xffffffa, 28, 0xffffffb, 28,
  0x14, 6, 0x3f8, 10, 0x3f9, 10, 0xffa, 12, 0x1ff9, 13, 0x15, 6, 0xf8, 8, 0x7fa, 11,
  0x3fa, 10, 0x3fb, 10, 0xf9, 8, 0x7fb, 11, 0xfa, 8, 0x16, 6, 0x17, 6, 0x18, 6,
  0x0, 5, 0x1, 5, 0x2, 5, 0x19, 6, 0x1a, 6, 0x1b, 6, 0x1c, 6, 0x1d, 6,
  0x1e, 6, 0x1f, 6, 0x5c, 7, 0xfb, 8, 0x7ffc, 15, 0x20, 6, 0xffb, 12, 0x3fc, 10,
  0x1ffa, 13, 0x21, 6, 0x5d, 7, 0x5e, 7, 0x5f, 7, 0x60, 7, 0x61, 7, 0x62, 7,
  0x63, 7, 0x64, 7, 0x65, 7, 0x66, 7, 0x67, 7, 0x68, 7, 0x69, 7, 0x6a, 7,
  0x6b, 7, 0x6c, 7, 0x6d, 7, 0x6e, 7, 0x6f, 7, 0x70, 7, 0x71, 7, 0x72, 7,
  0xfc, 8, 0x73, 7, 0xfd, 8, 0x1ffb, 13, 0x7fff0, 19, 0x1ffc, 13, 0x3ffc, 14, 0x22, 6,
  0x7ffd, 15, 0x3, 5, 0x23, 6, 0x4, 5, 0x24, 6, 0x5, 5, 0x25, 6, 0x26, 6,
  0x27, 6, 0x6, 5, 0x74, 7, 0x75, 7, 0x28, 6, 0x29, 6, 0x2a, 6, 0x7, 5,
  0x2b, 6, 0x76, 7, 0x2c, 6, 0x8, 5, 0x9, 5, 0x2d, 6, 0x77, 7, 0x78, 7,
  0x79, 7, 0x7a, 7, 0x7b, 7, 0x7ffe, 15, 0x7fc, 11, 0x3ffd, 14, 0x1ffd, 13, 0xffffffc, 28,
  0xfffe6, 20, 0x3fffd2, 22, 0xfffe7, 20, 0xfffe8, 20, 0x3fffd3, 22, 0x3fffd4, 22, 0x3fffd5, 22, 0x7fffd9, 23,
  0x3fffd6, 22, 0x7fffda, 23, 0x7fffdb, 23, 0x7fffdc, 23, 0x7fffdd, 23, 0x7fffde, 23, 0xffffeb, 24, 0x7fffdf, 23,
  0xffffec, 24, 0xffffed, 24, 0x3fffd7, 22, 0x7fffe0, 23, 0xffffee, 24, 0x7fffe1, 23, 0x7fffe2, 23, 0x7fffe3, 23,
  0x7fffe4, 23, 0x1fffdc, 21, 0x3fffd8, 22, 0x7fffe5, 23, 0x3fffd9, 22, 0x7fffe6, 23, 0x7fffe7, 23, 0xffffef, 24,
  0x3fffda, 22, 0x1fffdd, 21, 0xfffe9, 20, 0x3fffdb, 22, 0x3fffdc, 22, 0x7fffe8, 23, 0x7fffe9, 23, 0x1fffde, 21,
  0x7fffea, 23, 0x3fffdd, 22, 0x3fffde, 22, 0xfffff0, 24, 0x1fffdf, 21, 0x3fffdf, 22, 0x7fffeb, 23, 0x7fffec, 23,
  0x1fffe0, 21, 0x1fffe1, 21, 0x3fffe0, 22, 0x1fffe2, 21, 0x7fffed, 23, 0x3fffe1, 22, 0x7fffee, 23, 0x7fffef, 23,
  0xfffea, 20, 0x3fffe2, 22, 0x3fffe3, 22, 0x3fffe4, 22, 0x7ffff0, 23, 0x3fffe5, 22, 0x3fffe6, 22, 0x7ffff1, 23,
  0x3ffffe0, 26, 0x3ffffe1, 26, 0xfffeb, 20, 0x7fff1, 19, 0x3fffe7, 22, 0x7ffff2, 23, 0x3fffe8, 22, 0x1ffffec, 25,
  0x3ffffe2, 26, 0x3ffffe3, 26, 0x3ffffe4, 26, 0x7ffffde, 27, 0x7ffffdf, 27, 0x3ffffe5, 26, 0xfffff1, 24, 0x1ffffed, 25,
  0x7fff2, 19, 0x1fffe3, 21, 0x3ffffe6, 26, 0x7ffffe0, 27, 0x7ffffe1, 27, 0x3ffffe7, 26, 0x7ffffe2, 27, 0xfffff2, 24,
  0x1fffe4, 21, 0x1fffe5, 21, 0x3ffffe8, 26, 0x3ffffe9, 26, 0xffffffd, 28, 0x7ffffe3, 27, 0x7ffffe4, 27, 0x7ffffe5, 27,
  0xfffec, 20, 0xfffff3, 24, 0xfffed, 20, 0x1fffe6, 21, 0x3fffe9, 22, 0x1fffe7, 21, 0x1fffe8, 21, 0x7ffff3, 23,
  0x3fffea, 22, 0x3fffeb, 22, 0x1ffffee, 25, 0x1ffffef, 25, 0xfffff4, 24, 0xfffff5, 24, 0x3ffffea, 26, 0x7ffff4, 23,
  0x3ffffeb, 26, 0x7ffffe6, 27, 0x3ffffec, 26, 0x3ffffed, 26, 0x7ffffe7, 27, 0x7ffffe8, 27, 0x7ffffe9, 27, 0x7ffffea, 27,
  0x7ffffeb, 27, 0xffffffe, 28, 0x7ffffec, 27, 0x7ffffed, 27, 0x7ffffee, 27, 0x7ffffef, 27, 0x7fffff0, 27, 0x3ffffee, 26,
  0x3fffffff, 30,
];

const EOS = 256;

/**
 * The Huffman code as a binary trie in two arrays: for node n, `next[2n + bit]` is the child
 * (a positive node number) or a leaf (-1 - symbol); 0 means no code continues that way.
 */
const HUFFMAN_TRIE: Int32Array = (() => {
  const next = new Int32Array(2 * 512);
  let nodes = 1;
  for (let symbol = 0; symbol <= EOS; symbol++) {
    const code = HUFFMAN_CODES[2 * symbol] as number;
    const bits = HUFFMAN_CODES[2 * symbol + 1] as number;
    let node = 0;
    for (let i = bits - 1; i >= 0; i--) {
      const slot = 2 * node + ((code >>> i) & 1);
      if (i === 0) {
        next[slot] = -1 - symbol;
        break;
      }
      if (next[slot] === 0) next[slot] = nodes++;
      node = next[slot] as number;
    }
  }
  return next;
})();

export class HpackError extends Error {}

/** A header block that decodes to more than the list size announced (not a coding error). */
export class HeaderListTooLarge extends Error {}

function huffmanDecode(data: Buffer, start: number, end: number): string {
  const out = Buffer.allocUnsafe(Math.ceil(((end - start) * 8) / 5));
  let length = 0;
  let node = 0;
  /** Bits read since the last symbol, and whether all of them were 1 (a valid padding). */
  let depth = 0;
  let allOnes = true;
  for (let i = start; i < end; i++) {
    const byte = data[i] as number;
    for (let b = 7; b >= 0; b--) {
      const bit = (byte >>> b) & 1;
      const to = HUFFMAN_TRIE[2 * node + bit] as number;
      if (to === 0) throw new HpackError('a Huffman-coded string holds an invalid code');
      if (to < 0) {
        const symbol = -1 - to;
        if (symbol === EOS) throw new HpackError('a Huffman-coded string holds the EOS symbol');
        out[length++] = symbol;
        node = 0;
        depth = 0;
        allOnes = true;
      } else {
        node = to;
        depth++;
        allOnes &&= bit === 1;
      }
    }
  }
  // RFC 7541 5.2: padding is the most significant bits of EOS (all ones), shorter than 8 bits.
  if (depth > 7 || !allOnes) throw new HpackError('a Huffman-coded string ends with an invalid padding');
  return out.toString('latin1', 0, length);
}

/** Header fields in the order received; a name may repeat. */
export type HeaderList = [string, string][];

/** Decodes header blocks of one connection (the dynamic table lives across them). */
export class HpackDecoder {
  private readonly table: [string, string][] = [];
  private tableBytes = 0;
  private maxTableBytes: number;
  private pos = 0;
  private block: Buffer = Buffer.alloc(0);

  /**
   * `settingsTableBytes`: the SETTINGS_HEADER_TABLE_SIZE this end announced (4096 unless it said
   * otherwise); `maxListBytes`: the SETTINGS_MAX_HEADER_LIST_SIZE, above which decoding stops.
   */
  constructor(
    private readonly settingsTableBytes = 4096,
    private readonly maxListBytes = Number.POSITIVE_INFINITY,
  ) {
    this.maxTableBytes = settingsTableBytes;
  }

  /** The fields of a complete header block; throws HpackError (a connection error, COMPRESSION_ERROR). */
  decode(block: Buffer): HeaderList {
    this.block = block;
    this.pos = 0;
    const fields: HeaderList = [];
    let fieldSeen = false;
    // RFC 9113 6.5.2: names, values and 32 per field. Checked as each field is decoded, since a
    // one-byte index can name a 4 KiB table entry: 16 KiB of block, 64 MiB of fields.
    let listBytes = 0;
    const keep = (field: [string, string]): void => {
      listBytes += field[0].length + field[1].length + 32;
      if (listBytes > this.maxListBytes) throw new HeaderListTooLarge(`a header list above ${this.maxListBytes} bytes once decoded`);
      fields.push(field);
    };
    while (this.pos < block.length) {
      const first = block[this.pos] as number;
      if (first & 0x80) {
        const [name, value] = this.entry(this.integer(7));
        keep([name, value]);
        fieldSeen = true;
      } else if (first & 0x40) {
        const field = this.literal(6);
        this.add(field);
        keep(field);
        fieldSeen = true;
      } else if (first & 0x20) {
        // RFC 7541 4.2: a size update comes at the start of a block only.
        if (fieldSeen) throw new HpackError('a dynamic table size update after a header field');
        const size = this.integer(5);
        if (size > this.settingsTableBytes) throw new HpackError(`a dynamic table size update to ${size}, above the ${this.settingsTableBytes} announced`);
        this.maxTableBytes = size;
        this.evict(0);
      } else {
        // Literal without indexing (0000) or never indexed (0001): the same to a decoder.
        keep(this.literal(4));
        fieldSeen = true;
      }
    }
    return fields;
  }

  private integer(prefixBits: number): number {
    const block = this.block;
    const max = (1 << prefixBits) - 1;
    let value = (block[this.pos++] as number) & max;
    if (value < max) return value;
    let shift = 0;
    for (;;) {
      if (this.pos >= block.length) throw new HpackError('a header block ends inside an integer');
      const byte = block[this.pos++] as number;
      value += (byte & 0x7f) * 2 ** shift;
      shift += 7;
      if ((byte & 0x80) === 0) break;
      if (shift > 28) throw new HpackError('an integer in a header block is too large');
    }
    return value;
  }

  private string(): string {
    const block = this.block;
    if (this.pos >= block.length) throw new HpackError('a header block ends before a string');
    const huffman = ((block[this.pos] as number) & 0x80) !== 0;
    const length = this.integer(7);
    const start = this.pos;
    const end = start + length;
    if (end > block.length) throw new HpackError('a string runs past the end of its header block');
    this.pos = end;
    return huffman ? huffmanDecode(block, start, end) : block.toString('latin1', start, end);
  }

  private literal(prefixBits: number): [string, string] {
    const index = this.integer(prefixBits);
    const name = index === 0 ? this.string() : this.entry(index)[0];
    return [name, this.string()];
  }

  private entry(index: number): readonly [string, string] {
    if (index >= 1 && index <= STATIC_TABLE.length) return STATIC_TABLE[index - 1] as [string, string];
    const field = this.table[index - STATIC_TABLE.length - 1];
    if (field === undefined) throw new HpackError(`a header block refers to index ${index}, which is not in the table`);
    return field;
  }

  private add(field: [string, string]): void {
    const size = field[0].length + field[1].length + 32;
    this.evict(size);
    // RFC 7541 4.4: an entry larger than the table empties it and is not added.
    if (size > this.maxTableBytes) return;
    this.table.unshift(field);
    this.tableBytes += size;
  }

  /** Evicts the oldest entries until `room` more bytes fit. */
  private evict(room: number): void {
    while (this.tableBytes + room > this.maxTableBytes && this.table.length > 0) {
      const [name, value] = this.table.pop() as [string, string];
      this.tableBytes -= name.length + value.length + 32;
    }
  }
}

/** A header field as a literal without indexing, new name, no Huffman (RFC 7541 6.2.2). */
function literalField(name: string, value: string): Buffer {
  return Buffer.concat([Buffer.from([0x00]), stringLiteral(name), stringLiteral(value)]);
}

function stringLiteral(text: string): Buffer {
  const bytes = Buffer.from(text, 'latin1');
  return Buffer.concat([integerBytes(bytes.length, 7, 0x00), bytes]);
}

function integerBytes(value: number, prefixBits: number, flags: number): Buffer {
  const max = (1 << prefixBits) - 1;
  if (value < max) return Buffer.from([flags | value]);
  const out = [flags | max];
  let rest = value - max;
  while (rest >= 0x80) {
    out.push((rest & 0x7f) | 0x80);
    rest = Math.floor(rest / 0x80);
  }
  out.push(rest);
  return Buffer.from(out);
}

/** A header block of the given fields, none of them indexed: the peer's table is never touched. */
export function encodeHeaderBlock(fields: readonly (readonly [string, string])[]): Buffer {
  return Buffer.concat(
    fields.map(([name, value]) => {
      if (name === ':status' && value === '200') return Buffer.from([0x88]);
      const index = STATIC_TABLE.findIndex(([n]) => n === name);
      if (index < 0) return literalField(name, value);
      return Buffer.concat([integerBytes(index + 1, 4, 0x00), stringLiteral(value)]);
    }),
  );
}
