import type { TrustDomain, SpiffeId } from '../../spiffe/id/index.js';
import { spiffeIdFromSegments } from '../../spiffe/id/index.js';
import type { Datastore, Selector } from '../datastore/types.js';
import { SvidscopeError } from '../../../common/errors/catalog.js';

/** The node attestation type of one-time join tokens, as SPIRE names it. */
export const JOIN_TOKEN_TYPE = 'join_token';

/**
 * Join-token node attestation. The token is consumed (deleted) before its expiry is checked, so
 * any use burns it, even a late one; two servers racing on one datastore cannot both accept it.
 * The agent gets `spiffe://<td>/spire/agent/join_token/<token>` and the node selector
 * `spiffe_id:<that ID>`, which node-alias entries can match.
 */
export async function attestJoinToken(datastore: Datastore, td: TrustDomain, token: string, now: Date): Promise<{ agentId: SpiffeId; selectors: Selector[] }> {
  if (token === '') throw new SvidscopeError('join-token-invalid', 'join token is empty');
  let agentId: SpiffeId;
  try {
    agentId = spiffeIdFromSegments(td, ['spire', 'agent', JOIN_TOKEN_TYPE, token]);
  } catch {
    throw new SvidscopeError('join-token-invalid', 'join token holds characters a SPIFFE ID path cannot carry');
  }
  const result = await datastore.consumeJoinToken(token, now);
  if (result.outcome === 'unknown') throw new SvidscopeError('join-token-unknown', 'join token does not exist or has already been used');
  if (result.outcome === 'expired') throw new SvidscopeError('join-token-expired', 'join token expired');
  return { agentId, selectors: [{ type: 'spiffe_id', value: agentId.toString() }] };
}
