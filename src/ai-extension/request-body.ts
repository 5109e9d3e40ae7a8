import { asBuffer } from './protocol.js';

/**
 * The request body of one attempt as Envoy sends it in full-duplex mode: its chunks come one
 * message each, without waiting for the answer to the request headers, the last flagged
 * `end_of_stream` (or followed by the request trailers). Each chunk is answered in turn after
 * the headers, so the answers can tell which chunk is the last one carrying the body.
 */
export class RequestBodyChunks {
  private chunks: Buffer[] = [];
  private joined: Buffer | undefined;
  private received = 0;
  private bytes = 0;
  /** The body went past the limit: its bytes are no longer kept. */
  tooLarge = false;
  private answered = 0;
  private ended = false;
  /** The body ended with the request trailers rather than with a chunk flagged end_of_stream. */
  endedByTrailers = false;
  private resolve: () => void = () => undefined;
  /** Settles once the whole body is in. */
  readonly done = new Promise<void>((resolve) => (this.resolve = resolve));

  constructor(private readonly limitBytes: number) {}

  push(bytes: Uint8Array, end: boolean): void {
    this.received++;
    if (this.ended) return;
    this.bytes += bytes.length;
    if (this.bytes > this.limitBytes) {
      this.tooLarge = true;
      this.chunks = [];
      this.finish(false);
      return;
    }
    if (bytes.length > 0) this.chunks.push(asBuffer(bytes));
    if (end) this.finish(false);
  }

  trailers(): void {
    if (!this.ended) this.finish(true);
  }

  get complete(): boolean {
    return this.ended;
  }

  /** The body received so far (the whole of it once complete). */
  whole(): Buffer {
    if (this.joined === undefined || !this.ended) this.joined = this.chunks.length === 1 && this.chunks[0] !== undefined ? this.chunks[0] : Buffer.concat(this.chunks);
    return this.joined;
  }

  /** Counts one chunk's answer: true when it is the answer to the last chunk of a complete body. */
  answerNext(): boolean {
    this.answered++;
    return this.ended && this.answered === this.received;
  }

  private finish(byTrailers: boolean): void {
    this.ended = true;
    this.endedByTrailers = byTrailers;
    this.resolve();
  }
}
