/**
 * Splits a provider's SSE stream, as text, into whole events (the text between blank lines); a
 * partial event waits for the next chunk.
 */
export class SseEvents {
  private pending = '';

  push(chunk: string): string[] {
    this.pending += chunk;
    const events: string[] = [];
    for (;;) {
      const end = this.pending.search(/\r?\n\r?\n/);
      if (end < 0) break;
      events.push(this.pending.slice(0, end));
      this.pending = this.pending.slice(end).replace(/^\r?\n\r?\n/, '');
    }
    return events;
  }

  /** The stream ended: a last event that had no blank line after it ('' when there is none). */
  rest(): string {
    const rest = this.pending.trim();
    this.pending = '';
    return rest;
  }
}
