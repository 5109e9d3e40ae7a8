import { describe, expect, it } from 'vitest';
import { MemberVerdicts, memberVerdicts } from '../../src/ai-extension/member-verdicts.js';

describe('MemberVerdicts', () => {
  it('remembers only the last real outcome of each member of each Backend', () => {
    const v = new MemberVerdicts();
    expect(v.lastFailed('ai/chat', 'large')).toBe(false);
    v.note('ai/chat', 'large', true);
    expect(v.lastFailed('ai/chat', 'large')).toBe(true);
    expect(v.lastFailed('ai/other', 'large')).toBe(false);
    v.note('ai/chat', 'large', false);
    expect(v.lastFailed('ai/chat', 'large')).toBe(false);
  });

  it('is one per extension context', () => {
    const a = {};
    memberVerdicts(a).note('ai/chat', 'm', true);
    expect(memberVerdicts(a).lastFailed('ai/chat', 'm')).toBe(true);
    expect(memberVerdicts({}).lastFailed('ai/chat', 'm')).toBe(false);
  });
});
