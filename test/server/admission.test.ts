import { describe, expect, it } from 'vitest';
import { Admission } from '../../src/identity-plane/server/api/admission.js';

const call = (deadline: Date | number, cancelled = false) => ({ getDeadline: () => deadline, cancelled });

describe('Admission', () => {
  it('drops a call whose deadline passed or that was cancelled, and counts it as expired_deadline', () => {
    const hits: string[] = [];
    const a = new Admission({ signingQueueMaxCsrs: 10, limitHit: (l) => hits.push(l) });
    expect(() => a.checkDeadline(call(Infinity))).not.toThrow();
    expect(() => a.checkDeadline(call(new Date(Date.now() + 60_000)))).not.toThrow();
    expect(() => a.checkDeadline(call(new Date(Date.now() - 1)))).toThrow(expect.objectContaining({ code: 'deadline-expired' }) as Error);
    expect(() => a.checkDeadline(call(Date.now() - 1))).toThrow(expect.objectContaining({ code: 'deadline-expired' }) as Error);
    expect(() => a.checkDeadline(call(Infinity, true))).toThrow(expect.objectContaining({ code: 'deadline-expired' }) as Error);
    expect(hits).toEqual(['expired_deadline', 'expired_deadline', 'expired_deadline']);
  });

  it('bounds queued CSRs, admits a lone oversized batch, and frees what is released', () => {
    const hits: string[] = [];
    const a = new Admission({ signingQueueMaxCsrs: 10, limitHit: (l) => hits.push(l) });
    const big = a.reserve(25); // nothing queued: admitted whole, so it can progress
    expect(a.pendingCsrs).toBe(25);
    expect(() => a.reserve(1)).toThrow(expect.objectContaining({ code: 'server-overloaded', message: expect.stringContaining('signing_queue_max_csrs') as string }) as Error);
    big(20);
    expect(a.pendingCsrs).toBe(5);
    const small = a.reserve(5); // 5 + 5 = 10, at the limit
    expect(() => a.reserve(1)).toThrow(expect.objectContaining({ code: 'server-overloaded' }) as Error);
    big();
    big(); // a second full release changes nothing
    small();
    expect(a.pendingCsrs).toBe(0);
    expect(hits).toEqual(['signing_queue_max_csrs', 'signing_queue_max_csrs']);
  });
});
