import * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { codeForGrpcStatus, errorCatalog, errorCodes, GrpcStatus, SvidscopeError } from '../../src/common/errors/catalog.js';
import { codeOfServiceError, ERROR_CODE_METADATA, toServiceError } from '../../src/common/errors/grpc.js';

describe('the one gRPC status ⇄ catalogue code mapping', () => {
  it('reads every catalogue row\'s status back as a code of that same status (deadlines: as retryable unavailable)', () => {
    for (const code of errorCodes) {
      // A peer's DEADLINE_EXCEEDED reads as unavailable on purpose (the next test): retried, not reported.
      if (errorCatalog[code].grpc === GrpcStatus.DEADLINE_EXCEEDED) continue;
      const back = codeForGrpcStatus(errorCatalog[code].grpc);
      expect(errorCatalog[back].grpc, `${code} → ${back}`).toBe(errorCatalog[code].grpc);
    }
  });

  it('gives every gRPC status a catalogue code; transient ones are retryable, unknown ones internal', () => {
    for (const status of Object.values(GrpcStatus)) expect(errorCatalog[codeForGrpcStatus(status)], String(status)).toBeDefined();
    expect([GrpcStatus.DEADLINE_EXCEEDED, GrpcStatus.CANCELLED].map(codeForGrpcStatus)).toEqual(['unavailable', 'unavailable']);
    expect([GrpcStatus.UNKNOWN, GrpcStatus.DATA_LOSS, 99].map(codeForGrpcStatus)).toEqual(['internal', 'internal', 'internal']);
  });

  it('sends every code with its status, message and trailer, and reads the code back from the trailer', () => {
    for (const code of errorCodes.filter((c) => c !== 'internal')) {
      const e = toServiceError(new SvidscopeError(code, `m ${code}`), () => expect.unreachable());
      expect([e.code, e.details, e.metadata.get(ERROR_CODE_METADATA)]).toEqual([errorCatalog[code].grpc, `m ${code}`, [code]]);
      expect(codeOfServiceError(e)).toBe(code);
    }
  });

  it('hides unexpected faults (and the internal code) behind INTERNAL, handing them to the sink', () => {
    const seen: unknown[] = [];
    const boom = new Error('secret path /etc/x');
    for (const err of [boom, new SvidscopeError('internal', 'ca: no active X.509 CA')]) {
      const e = toServiceError(err, (x) => seen.push(x));
      expect([e.code, e.details, codeOfServiceError(e)]).toEqual([grpc.status.INTERNAL, 'internal error', 'internal']);
    }
    expect(seen).toHaveLength(2);
    expect(seen[0]).toBe(boom);
  });

  it('reads a peer without the trailer (another SPIFFE implementation) by its status; an unknown trailer too', () => {
    const bare = (status: grpc.status, trailer?: string) => {
      const metadata = new grpc.Metadata();
      if (trailer !== undefined) metadata.set(ERROR_CODE_METADATA, trailer);
      return { code: status, metadata };
    };
    expect(codeOfServiceError(bare(grpc.status.PERMISSION_DENIED))).toBe('permission-denied');
    expect(codeOfServiceError(bare(grpc.status.INVALID_ARGUMENT, 'no-such-code'))).toBe('usage');
    expect(codeOfServiceError(bare(grpc.status.PERMISSION_DENIED, 'workload-no-identity'))).toBe('workload-no-identity');
  });
});
