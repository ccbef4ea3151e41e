import { spiffeIdFromPath, type SpiffeId, type TrustDomain } from '../spiffe/id/index.js';

/**
 * The path of a server's own SPIFFE ID, `spiffe://<td>/spire/server`: the identity agents and
 * federated peers expect on the server's TLS endpoints, and the parent of node-alias entries. SPIRE
 * uses this path, so SPIFFE clients configured for SPIRE find our servers unchanged.
 */
export const SERVER_ID_PATH = '/spire/server';

/** The server's SPIFFE ID in `trustDomain`. */
export function serverSpiffeId(trustDomain: TrustDomain): SpiffeId {
  return spiffeIdFromPath(trustDomain, SERVER_ID_PATH);
}

/** The same as a string, for configuration written from a trust domain name already validated. */
export function serverSpiffeIdString(trustDomainName: string): string {
  return `spiffe://${trustDomainName}${SERVER_ID_PATH}`;
}
