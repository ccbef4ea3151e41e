/**
 * Record builders and assertions shared by the datastore suite and the backend-specific tests.
 */
import { expect } from 'vitest';
import type { ErrorCode } from '../../src/common/errors/catalog.js';
import { isSvidscopeError } from '../../src/common/errors/catalog.js';
import type { AgentRecord, CaKeyRecord, NewEntry, StoredBundle } from '../../src/identity-plane/server/datastore/index.js';

export const T0 = new Date(Date.UTC(2030, 0, 1));
export const at = (seconds: number) => new Date(T0.getTime() + seconds * 1000);

export function newEntry(overrides: Partial<NewEntry> = {}): NewEntry {
  return {
    spiffeId: 'spiffe://example.org/workload',
    parentId: 'spiffe://example.org/spire/agent/join_token/abc',
    selectors: [{ type: 'unix', value: 'uid:1000' }],
    x509SvidTtl: 3600,
    jwtSvidTtl: 300,
    dnsNames: [],
    federatesWith: [],
    admin: false,
    downstream: false,
    expiresAt: null,
    hint: '',
    ...overrides,
  };
}

export function newAgent(overrides: Partial<AgentRecord> = {}): AgentRecord {
  return {
    spiffeId: 'spiffe://example.org/spire/agent/join_token/abc',
    serialNumber: '0a1b2c',
    expiresAt: at(3600),
    banned: false,
    attestationType: 'join_token',
    selectors: [{ type: 'join_token', value: 'abc' }],
    ...overrides,
  };
}

export function newBundle(trustDomain: string, sequence: bigint, text = `{"keys":[],"seq":${sequence}}`): StoredBundle {
  return { trustDomain, document: Buffer.from(text), sequence, updatedAt: T0 };
}

export function newCaKey(id: string, overrides: Partial<CaKeyRecord> = {}): CaKeyRecord {
  return {
    id,
    kind: 'x509',
    phase: 'prepared',
    certificateDer: Buffer.from(`cert-${id}`),
    publicKeyDer: Buffer.from(`pub-${id}`),
    privateKeyPkcs8: Buffer.from(`priv-${id}`),
    notAfter: at(86_400),
    createdAt: T0,
    ...overrides,
  };
}

/** Asserts a rejection with a catalogue code (first) and a message matching `message`, like SPIRE's expectCode/expectMsg. */
export async function expectCode(promise: Promise<unknown>, code: ErrorCode, message?: RegExp): Promise<void> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, `expected a ${code} rejection`).toBeDefined();
  if (!isSvidscopeError(err)) throw err;
  expect(err.code).toBe(code);
  expect(err.message).toMatch(/^datastore: /);
  if (message) expect(err.message).toMatch(message);
}
