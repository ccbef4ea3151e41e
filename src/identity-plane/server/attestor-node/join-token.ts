import type { TrustDomain, SpiffeId } from '../../spiffe/id/index.js';
import { spiffeIdFromSegments } from '../../spiffe/id/index.js';
import type { AgentRecord, AttestedAgent, Datastore, Selector } from '../datastore/types.js';
import { SvidscopeError } from '../../../common/errors/catalog.js';

/** The node attestation type of one-time join tokens, as SPIRE names it. */
export const JOIN_TOKEN_TYPE = 'join_token';

/**
 * Join-token node attestation. The token is consumed (deleted) before its expiry is checked, so
 * any use burns it, even a late one; two servers racing on one datastore cannot both accept it.
 * The agent gets `spiffe://<td>/spire/agent/join_token/<token>` and the node selector
 * `spiffe_id:<that ID>`, which node-alias entries can match.
 *
 * The agent record is stored in the transaction that spends the token (one commit per attestation):
 * `admit` sees the agent's current record and returns the one to store, or undefined to store
 * nothing (a banned agent); `stored` is then undefined too.
 */
export async function attestJoinToken(
  datastore: Datastore, td: TrustDomain, token: string, now: Date,
  admit: (agentId: SpiffeId, selectors: Selector[], existing: AttestedAgent | undefined) => AgentRecord | undefined,
): Promise<{ agentId: SpiffeId; existing?: AttestedAgent; stored?: AttestedAgent }> {
  if (token === '') throw new SvidscopeError('join-token-invalid', 'join token is empty');
  let agentId: SpiffeId;
  try {
    agentId = spiffeIdFromSegments(td, ['spire', 'agent', JOIN_TOKEN_TYPE, token]);
  } catch {
    throw new SvidscopeError('join-token-invalid', 'join token holds characters a SPIFFE ID path cannot carry');
  }
  const selectors: Selector[] = [{ type: 'spiffe_id', value: agentId.toString() }];
  const { consumption, existing, stored } = await datastore.consumeJoinTokenForAgent(token, agentId.toString(), now, (found) => admit(agentId, selectors, found));
  if (consumption.outcome === 'unknown') throw new SvidscopeError('join-token-unknown', 'join token does not exist or has already been used');
  if (consumption.outcome === 'expired') throw new SvidscopeError('join-token-expired', 'join token expired');
  return { agentId, existing, stored };
}
