import * as grpc from '@grpc/grpc-js';
import { context, trace, type Span, type Tracer } from '@opentelemetry/api';
import { SpanAttr, SpanKind } from '../../../common/telemetry/tracing.js';
import type { Clock } from '../../../common/clock.js';
import { errorCatalog, GrpcStatus, isSvidscopeError, SvidscopeError, type ErrorCode } from '../../../common/errors/catalog.js';
import { toServiceError } from '../../../common/errors/grpc.js';
import type { Logger } from '../../../common/log.js';
import { BundleSet, jwtBundleToJson, type SpiffeBundle } from '../../spiffe/bundle/index.js';
import { parseSpiffeIdBounded } from '../../spiffe/id/index.js';
import { checkJwtAudienceLimits, verifyJwtSvid, type JwtAudienceLimits } from '../../spiffe/jwtsvid/index.js';
import type { Selector, WorkloadCache, WorkloadIdentities } from '../manager/cache.js';
import type { EntryMsg } from '../../server-api/messages.js';
import { jsonToStruct, SECURITY_HEADER, SECURITY_HEADER_VALUE, workloadApiService } from '../../workload-api/index.js';
import { encodedAnswer, ResponseCache, selectorsKey, type CachedAnswer } from './response-cache.js';

/** What the handler needs to know about the caller: its selectors, from the kernel, never from the request. */
export interface WorkloadAttestor {
  attest(call: grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown>): Promise<Selector[]>;
}

export interface JwtSource {
  fetchJwtSvid(entry: EntryMsg, audience: string[]): Promise<{ token: string; expiresAt: number }>;
}

export interface WorkloadHandlerEvents {
  request?(method: string, code: grpc.status, seconds: number): void;
  streamOpened?(method: string): void;
  streamClosed?(method: string): void;
  firstMessage?(method: string, seconds: number): void;
  /** A request refused by a configured limit (bounded: the limit's config key). */
  limitHit?(limit: string): void;
}

export interface WorkloadHandlerDeps {
  cache: WorkloadCache;
  attestor: WorkloadAttestor;
  jwt: JwtSource;
  clock: Clock;
  logger: Logger;
  /** Checked before anything is fetched, cached or forwarded to the server. */
  jwtAudience: JwtAudienceLimits;
  events?: WorkloadHandlerEvents;
  tracer?: Tracer;
}

/**
 * A deliberate answer of this handler. Its status and message are what SPIFFE clients (go-spiffe)
 * see; other SvidscopeErrors from below stay hidden behind INTERNAL unless they are listed in
 * EXPOSED. Every answer carries the catalogue code trailer.
 */
class Refusal extends SvidscopeError {}

/** Errors from the attestor and cache that the Workload API answers with as they are. */
const EXPOSED = new Set<ErrorCode>(['unavailable', 'workload-exec-after-connect']);

/** A token ValidateJWTSVID refused: always InvalidArgument, with the rule's code when it has one of that status. */
function invalidToken(err: unknown): Refusal {
  if (isSvidscopeError(err) && errorCatalog[err.code].grpc === GrpcStatus.INVALID_ARGUMENT) return new Refusal(err.code, err.message);
  return new Refusal('malformed', isSvidscopeError(err) ? err.message : 'token is invalid');
}

function checkHeader(metadata: grpc.Metadata): void {
  const values = metadata.get(SECURITY_HEADER);
  if (values.length !== 1 || values[0] !== SECURITY_HEADER_VALUE) throw new Refusal('workload-header-missing', 'security header missing from request');
}

const concat = (ders: readonly Buffer[]) => Buffer.concat(ders);
const x509Der = (b: SpiffeBundle) => concat(b.x509Authorities.map((a) => a.der));

type Call = grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown>;
/** What a stream sends for the caller's current identities: a message with a change key, or nothing yet. */
type Rendering = { key: string; message: object } | 'wait';

/**
 * The Workload API service definition the agent serves: as the standard one, except that a stream
 * may write an already encoded message (a Buffer), which is sent as it is. Streams write the
 * encoded answers of their ResponseCache, shared by every caller with the same selectors.
 */
export function workloadApiServerDefinition(): grpc.ServiceDefinition {
  const methods = Object.entries(workloadApiService().service).map(([name, m]) => [name, { ...m, responseSerialize: (value: unknown) => (Buffer.isBuffer(value) ? value : m.responseSerialize(value)) }]);
  return Object.fromEntries(methods) as grpc.ServiceDefinition;
}

/** The methods the agent answers (the `method` label of its Workload API metrics). */
export const WORKLOAD_API_METHODS = ['FetchX509SVID', 'FetchX509Bundles', 'FetchJWTBundles', 'FetchJWTSVID', 'ValidateJWTSVID'] as const;

/**
 * The SPIFFE Workload API (service `SpiffeWorkloadAPI`, no package). Every request must carry the
 * security header; the caller is attested from the kernel; streams send the full state first and
 * again on every change that alters what this caller sees.
 */
export function createWorkloadHandler(deps: WorkloadHandlerDeps): grpc.UntypedServiceImplementation {
  const { cache } = deps;
  return {
    FetchX509SVID: streamRpc(deps, 'FetchX509SVID', (ids) => renderX509Svids(cache, ids), { x509: true }),
    FetchX509Bundles: streamRpc(deps, 'FetchX509Bundles', (ids) => renderX509Bundles(cache, ids)),
    FetchJWTBundles: streamRpc(deps, 'FetchJWTBundles', (ids) => renderJwtBundles(cache, ids)),
    FetchJWTSVID: unaryRpc(deps, 'FetchJWTSVID', (req: { audience: string[]; spiffe_id: string }, selectors, span) => fetchJwtSvids(deps, req, selectors, span)),
    ValidateJWTSVID: unaryRpc(deps, 'ValidateJWTSVID', (req: { audience: string; svid: string }) => validateJwtSvid(deps, req)),
    FetchWITSVID: unimplemented('WIT-SVIDs are not implemented'),
    FetchWITBundles: unimplemented('WIT bundles are not implemented'),
  };
}

/** The gRPC error for a failed request (refusals keep their code; anything unexpected is logged and INTERNAL), counted. */
function failure(deps: WorkloadHandlerDeps, method: string, start: number, err: unknown): grpc.ServiceError {
  // The project's one mapping; the catalogue code travels in a trailer, as from the server.
  const exposed = err instanceof Refusal || (isSvidscopeError(err) && EXPOSED.has(err.code));
  const e = toServiceError(exposed ? err : new SvidscopeError('internal', 'internal error', { cause: err }), () => deps.logger.error({ err, method }, 'workload API handler failed'));
  deps.events?.request?.(method, e.code, (deps.clock.nowMs() - start) / 1000);
  return e;
}

async function identify(attestor: WorkloadAttestor, call: Call): Promise<Selector[]> {
  checkHeader(call.metadata);
  return attestor.attest(call);
}

/**
 * A server stream that re-renders on each cache change and only writes when the rendering changed.
 * Renderings are shared through a ResponseCache by every stream with the same selectors, and
 * encoded once, when a stream first has to write one.
 */
function streamRpc(deps: WorkloadHandlerDeps, method: string, render: (ids: WorkloadIdentities) => Rendering, opts: { x509?: boolean } = {}) {
  const { cache, clock, events } = deps;
  const answers = new ResponseCache(cache);
  const serialize = workloadApiService().service[method].responseSerialize;
  const answerFor = (selectors: Selector[], callerKey: string): CachedAnswer | 'wait' => {
    const now = clock.nowMs();
    const hit = answers.get(callerKey, now);
    if (hit) {
      if (opts.x509) cache.markUsed(hit.entryIds);
      return hit;
    }
    const ids = cache.identitiesFor(selectors, opts);
    const out = render(ids);
    if (out === 'wait') return out;
    let validUntilMs = Infinity;
    for (const s of ids.svids) validUntilMs = Math.min(validUntilMs, s.notAfter);
    const answer: CachedAnswer = { key: out.key, message: out.message, bytes: undefined, entryIds: ids.entries.map((e) => e.id), validUntilMs };
    // Kept only when every entry has its SVID: otherwise each rendering asks for the missing
    // ones to be minted (identitiesFor), which a reused answer would skip.
    if (!opts.x509 || ids.svids.length === ids.entries.length) answers.set(callerKey, answer);
    return answer;
  };
  return (call: grpc.ServerWritableStream<unknown, unknown>) => {
    const start = clock.nowMs();
    let lastKey: string | undefined;
    let unsubscribe: (() => void) | undefined;
    let done = false;
    const finish = (err?: grpc.ServiceError) => {
      if (done) return;
      done = true;
      unsubscribe?.();
      events?.streamClosed?.(method);
      if (err) call.emit('error', err);
      else call.end();
    };
    call.on('cancelled', () => finish());
    call.on('close', () => finish());
    identify(deps.attestor, call).then(
      (selectors) => {
        if (done) return;
        events?.streamOpened?.(method);
        const callerKey = selectorsKey(selectors);
        const push = () => {
          if (done) return;
          try {
            const out = answerFor(selectors, callerKey);
            if (out === 'wait' || out.key === lastKey) return;
            if (lastKey === undefined) {
              events?.firstMessage?.(method, (clock.nowMs() - start) / 1000);
              events?.request?.(method, grpc.status.OK, (clock.nowMs() - start) / 1000);
            }
            lastKey = out.key;
            call.write(encodedAnswer(out, serialize));
          } catch (err) {
            finish(failure(deps, method, start, err));
          }
        };
        unsubscribe = cache.subscribe(push, selectors);
        push();
      },
      (err: unknown) => finish(failure(deps, method, start, err)),
    );
  };
}

/** A unary call: the caller attested, `fn` run in a server span (when tracing is on), the outcome counted. */
function unaryRpc<Req, Res>(deps: WorkloadHandlerDeps, method: string, fn: (req: Req, selectors: Selector[], span: Span | undefined) => Promise<Res>): grpc.handleUnaryCall<Req, Res> {
  const { clock, events } = deps;
  return (call, callback) => {
    const start = clock.nowMs();
    // A server span per call when tracing is on; everything below (server calls too) runs in it.
    const span = deps.tracer?.startSpan(`svidscope.agent/${method}`, { kind: SpanKind.SERVER, attributes: { 'rpc.system': 'grpc', 'rpc.method': method } });
    const ctx = span ? trace.setSpan(context.active(), span) : context.active();
    context.with(ctx, () => {
      identify(deps.attestor, call as grpc.ServerUnaryCall<unknown, unknown>)
        .then((selectors) => fn(call.request, selectors, span))
        .then(
          (res) => {
            events?.request?.(method, grpc.status.OK, (clock.nowMs() - start) / 1000);
            span?.end();
            callback(null, res);
          },
          (err: unknown) => {
            const e = failure(deps, method, start, err);
            span?.setAttribute('rpc.grpc.status_code', e.code);
            span?.end();
            callback(e, null);
          },
        );
    });
  };
}

// Before its first sync the agent cannot tell "no identity" from "not known yet": answering
// PermissionDenied then would send on-call after registration entries during a server outage,
// and hide the outage from the Workload API SLO. Unavailable is retried by every client.
function noIdentity(cache: WorkloadCache): Refusal {
  return cache.entriesKnown
    ? new Refusal('workload-no-identity', 'no identity issued')
    : new Refusal('unavailable', 'the agent has not completed a sync with its server yet');
}

/** FetchX509SVID: the caller's X509-SVIDs (one per hint), its trust bundle and the federated ones. */
function renderX509Svids(cache: WorkloadCache, ids: WorkloadIdentities): Rendering {
  if (ids.entries.length === 0) throw noIdentity(cache);
  if (ids.svids.length === 0 || !ids.bundle) {
    // Entries match but nothing valid is cached: either minting is under way (wait), or every
    // SVID expired while the server was away — then say so rather than serve an expired one.
    const everMinted = ids.entries.some((e) => cache.svidFor(e.id));
    if (everMinted) throw new Refusal('workload-svid-expired', 'no valid X509-SVID: cached SVIDs expired and the server is unreachable');
    return 'wait';
  }
  const bundleDer = x509Der(ids.bundle);
  const seenHints = new Set<string>();
  const svids = ids.svids.filter((s) => !s.hint || (!seenHints.has(s.hint) && seenHints.add(s.hint)));
  const federated: Record<string, Buffer> = {};
  for (const [td, b] of ids.federated) federated[`spiffe://${td}`] = x509Der(b);
  return {
    key: [...svids.map((s) => `${s.entryId}:${s.notAfter}:${s.chain[0].length}:${s.chain[0].subarray(-16).toString('hex')}`), ids.bundle.sequenceNumber, ...[...ids.federated].map(([td, b]) => `${td}:${b.sequenceNumber}`)].join('|'),
    message: {
      svids: svids.map((s) => ({ spiffe_id: s.spiffeId, x509_svid: concat(s.chain), x509_svid_key: s.keyDer, bundle: bundleDer, hint: s.hint })),
      crl: [],
      federated_bundles: federated,
    },
  };
}

/** FetchX509Bundles: the X.509 authorities of the caller's trust domain and of the federated ones. */
function renderX509Bundles(cache: WorkloadCache, ids: WorkloadIdentities): Rendering {
  if (ids.entries.length === 0) throw noIdentity(cache);
  if (!ids.bundle) return 'wait';
  const bundles: Record<string, Buffer> = { [ids.bundle.trustDomain.idString]: x509Der(ids.bundle) };
  for (const [td, b] of ids.federated) bundles[`spiffe://${td}`] = x509Der(b);
  return { key: JSON.stringify(Object.entries(bundles).map(([k, v]) => [k, v.length, v.subarray(-16).toString('hex')])), message: { crl: [], bundles } };
}

/** FetchJWTBundles: the JWT authorities (JWKS) of the caller's trust domain and of the federated ones. */
function renderJwtBundles(cache: WorkloadCache, ids: WorkloadIdentities): Rendering {
  if (ids.entries.length === 0) throw noIdentity(cache);
  if (!ids.bundle) return 'wait';
  const bundles: Record<string, Buffer> = { [ids.bundle.trustDomain.idString]: Buffer.from(jwtBundleToJson(ids.bundle)) };
  for (const [td, b] of ids.federated) bundles[`spiffe://${td}`] = Buffer.from(jwtBundleToJson(b));
  return { key: JSON.stringify(Object.entries(bundles).map(([k, v]) => [k, v.toString('base64')])), message: { bundles } };
}

/** FetchJWTSVID: a JWT-SVID for each of the caller's entries (or the one asked for), minted by the server. */
async function fetchJwtSvids(deps: WorkloadHandlerDeps, req: { audience: string[]; spiffe_id: string }, selectors: Selector[], span: Span | undefined) {
  const { cache, events, logger } = deps;
  const audience = (req.audience ?? []).filter((a) => a !== '');
  if (audience.length === 0) throw new Refusal('usage', 'audience must be specified');
  const hit = checkJwtAudienceLimits(audience, deps.jwtAudience);
  if (hit) {
    events?.limitHit?.(hit.limit);
    throw new Refusal(hit.code, hit.message);
  }
  if (req.spiffe_id) {
    try {
      parseSpiffeIdBounded(req.spiffe_id);
    } catch (err) {
      throw new Refusal('invalid-spiffe-id', `invalid requested SPIFFE ID: ${(err as Error).message}`);
    }
  }
  const ids = cache.identitiesFor(selectors);
  const entries = ids.entries.filter((e) => !req.spiffe_id || e.spiffe_id === req.spiffe_id);
  if (entries.length === 0) throw noIdentity(cache);
  span?.setAttributes({ [SpanAttr.svidType]: 'jwt', [SpanAttr.spiffeId]: entries[0].spiffe_id, [SpanAttr.entryId]: entries[0].id, [SpanAttr.count]: entries.length });
  const svids = [];
  for (const entry of entries) {
    try {
      const { token } = await deps.jwt.fetchJwtSvid(entry, audience);
      svids.push({ spiffe_id: entry.spiffe_id, svid: token, hint: entry.hint });
    } catch (err) {
      logger.warn({ err: (err as Error).message, entryId: entry.id }, 'could not fetch a JWT-SVID from the server');
      throw new Refusal('unavailable', 'could not fetch JWT-SVID');
    }
  }
  return { svids };
}

/** ValidateJWTSVID: verifies a token against the agent's own and federated bundles, now, without leeway. */
async function validateJwtSvid(deps: WorkloadHandlerDeps, req: { audience: string; svid: string }) {
  const { cache, clock } = deps;
  if (!req.audience) throw new Refusal('usage', 'audience must be specified');
  if (!req.svid) throw new Refusal('usage', 'svid must be specified');
  const own = cache.ownBundle;
  if (!own) throw new Refusal('unavailable', 'the agent has no bundle yet');
  const set = new BundleSet([own, ...cache.federatedBundles().values()]);
  try {
    const svid = await verifyJwtSvid(req.svid, set, { audience: [req.audience], now: clock.now(), leewaySeconds: 0 });
    return { spiffe_id: svid.id.toString(), claims: jsonToStruct(svid.claims) };
  } catch (err) {
    throw invalidToken(err);
  }
}

/** WIT-SVID RPCs of newer Workload API versions: answered UNIMPLEMENTED. */
function unimplemented(message: string) {
  return (call: grpc.ServerWritableStream<unknown, unknown>) => {
    call.emit('error', toServiceError(new Refusal('unimplemented', message), () => {}));
  };
}
