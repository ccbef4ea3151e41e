/**
 * `svidscope agent api …`: the Workload API seen from a workload's seat, like SPIRE's
 * `spire-agent api fetch x509|jwt|bundles` and `api validate`. These commands speak only the
 * standard Workload API, so they work against svidscope's agent and SPIRE's alike.
 */
import type { Command } from 'commander';
import { printResult, type Io } from '../output.js';
import { withErrors } from '../run.js';
import { apiOptions, withApiClient, type ApiFlags, type Env } from './common.js';
import { registerFetchBundles, registerFetchJwt } from './fetch-jwt.js';
import { registerFetchX509 } from './fetch-x509.js';

interface ValidateFlags extends ApiFlags {
  audience: string;
  svid: string;
}

/**
 * Adds `api fetch x509|jwt|bundles` and `api validate` under `agent`. `env` is where the
 * SPIFFE_ENDPOINT_SOCKET fallback is read; the process environment unless a caller (a test)
 * provides its own.
 */
export function registerAgentApiCommands(agent: Command, io: Io, env: Env = process.env): void {
  const api = agent.command('api').description('call the Workload API as the calling workload (like spire-agent api)');
  const fetch = api.command('fetch').description('fetch SVIDs or bundles from the Workload API');
  registerFetchX509(fetch, io, env);
  registerFetchJwt(fetch, io, env);
  registerFetchBundles(fetch, io, env);

  apiOptions(api.command('validate').description('have the Workload API validate a JWT-SVID for an audience'))
    .requiredOption('--audience <aud>', 'the audience the token must be for')
    .requiredOption('--svid <token>', 'the JWT-SVID (compact form)')
    .action(withErrors(io, async (f: ValidateFlags) => {
      const result = await withApiClient(f, env, (c) => c.validateJwtSvid(f.svid.trim(), f.audience));
      const spiffeId = result.id.toString();
      printResult(io, f, { spiffeId, claims: result.claims }, () => [
        'SVID is valid.',
        `SPIFFE ID : ${spiffeId}`,
        `Claims    : ${JSON.stringify(result.claims)}`,
      ]);
    }));
}
