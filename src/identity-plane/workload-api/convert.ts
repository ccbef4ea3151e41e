/**
 * Workload API messages to svidscope values, with the standard's client rules: a message whose
 * mandatory field is at its default value is discarded (an error here), later SVIDs repeating a
 * non-empty hint are skipped (go-spiffe keeps the first), and bundles are kept per trust domain.
 */
import * as grpc from '@grpc/grpc-js';
import { isSvidscopeError, SvidscopeError } from '../../common/errors/catalog.js';
import { BundleSet, parseJwtBundle, parseX509BundleRaw } from '../spiffe/bundle/index.js';
import { parseSpiffeId, parseTrustDomain, type SpiffeId } from '../spiffe/id/index.js';
import { parseJwtSvidInsecure, type JwtSvid } from '../spiffe/jwtsvid/index.js';
import { parseX509SvidRaw, type X509Svid } from '../spiffe/x509svid/index.js';
import { WorkloadApiError } from './errors.js';
import {
  structToJson,
  type JwtBundlesResponseMessage,
  type JwtSvidResponseMessage,
  type ValidateJwtSvidResponseMessage,
  type X509BundlesResponseMessage,
  type X509SvidResponseMessage,
} from './proto.js';

/** An X509-SVID as the Workload API hands it out: the SVID plus the operator's hint. */
export interface WorkloadX509Svid extends X509Svid {
  readonly hint: string;
}

/** A JWT-SVID as the Workload API hands it out (parsed, not verified: it came from the local agent). */
export interface WorkloadJwtSvid extends JwtSvid {
  readonly hint: string;
}

/** One FetchX509SVID message: the SVIDs (first = default identity), the own and federated bundles, CRLs. */
export interface X509Context {
  readonly svids: readonly WorkloadX509Svid[];
  readonly bundles: BundleSet;
  readonly crl: readonly Buffer[];
}

/** What ValidateJWTSVID answers: the token's SPIFFE ID and its claims. */
export interface ValidatedJwtSvid {
  readonly id: SpiffeId;
  readonly claims: Record<string, unknown>;
}

/** A discarded message: the server broke the protocol, so it is retryable like any transient fault. */
function discarded(rpc: string, why: string, cause?: unknown): WorkloadApiError {
  const inner = isSvidscopeError(cause) ? `: ${cause.message}` : '';
  return new WorkloadApiError(isSvidscopeError(cause) ? cause.code : 'workload-api-response-invalid', grpc.status.UNAVAILABLE, `workloadapi: ${rpc}: ${why}${inner}`, { cause });
}

function guard<T>(rpc: string, why: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw discarded(rpc, why, err);
  }
}

export function toX509Context(msg: X509SvidResponseMessage): X509Context {
  const rpc = 'FetchX509SVID';
  if (msg.svids.length === 0) throw discarded(rpc, 'response holds no X509-SVID');
  const svids: WorkloadX509Svid[] = [];
  const hints = new Set<string>();
  const bundles = new BundleSet();
  msg.svids.forEach((m, i) => {
    if (m.hint !== '' && hints.has(m.hint)) return;
    hints.add(m.hint);
    const svid = guard(rpc, `svid ${i} (${JSON.stringify(m.spiffe_id)}) is invalid`, () => parseX509SvidRaw(m.x509_svid, m.x509_svid_key));
    svids.push({ ...svid, hint: m.hint });
    const td = svid.id.trustDomain;
    if (!bundles.has(td)) bundles.set(guard(rpc, `bundle of svid ${i} is invalid`, () => parseX509BundleRaw(td, m.bundle)));
  });
  for (const [key, der] of Object.entries(msg.federated_bundles)) {
    bundles.set(guard(rpc, `federated bundle ${JSON.stringify(key)} is invalid`, () => parseX509BundleRaw(parseTrustDomain(key), der)));
  }
  return { svids, bundles, crl: msg.crl };
}

export function toX509Bundles(msg: X509BundlesResponseMessage): BundleSet {
  const rpc = 'FetchX509Bundles';
  const set = new BundleSet();
  for (const [key, der] of Object.entries(msg.bundles)) {
    set.set(guard(rpc, `bundle ${JSON.stringify(key)} is invalid`, () => parseX509BundleRaw(parseTrustDomain(key), der)));
  }
  if (set.size === 0) throw discarded(rpc, 'response holds no bundle');
  return set;
}

export function toJwtBundles(msg: JwtBundlesResponseMessage): BundleSet {
  const rpc = 'FetchJWTBundles';
  const set = new BundleSet();
  for (const [key, json] of Object.entries(msg.bundles)) {
    set.set(guard(rpc, `bundle ${JSON.stringify(key)} is invalid`, () => parseJwtBundle(parseTrustDomain(key), json)));
  }
  if (set.size === 0) throw discarded(rpc, 'response holds no bundle');
  return set;
}

export function toJwtSvids(msg: JwtSvidResponseMessage): WorkloadJwtSvid[] {
  const rpc = 'FetchJWTSVID';
  if (msg.svids.length === 0) throw discarded(rpc, 'response holds no JWT-SVID');
  const hints = new Set<string>();
  const out: WorkloadJwtSvid[] = [];
  msg.svids.forEach((m, i) => {
    if (m.hint !== '' && hints.has(m.hint)) return;
    hints.add(m.hint);
    const svid = guard(rpc, `svid ${i} (${JSON.stringify(m.spiffe_id)}) is invalid`, () => parseJwtSvidInsecure(m.svid));
    out.push({ ...svid, hint: m.hint });
  });
  return out;
}

export function toValidated(msg: ValidateJwtSvidResponseMessage): ValidatedJwtSvid {
  const id = guard('ValidateJWTSVID', 'response spiffe_id is invalid', () => parseSpiffeId(msg.spiffe_id));
  return { id, claims: structToJson(msg.claims) };
}

/** The default identity: the first SVID of the context (the standard's rule). */
export function defaultX509Svid(ctx: X509Context): WorkloadX509Svid {
  if (ctx.svids.length === 0) throw new SvidscopeError('unavailable', 'workloadapi: the X.509 context holds no SVID');
  return ctx.svids[0];
}
