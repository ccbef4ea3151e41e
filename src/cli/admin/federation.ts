import type { Command } from 'commander';
import { readFileSync } from 'node:fs';
import type { FederationMsg } from '../../identity-plane/server/api/federation-service.js';
import { printResult, usageError, type Io } from '../output.js';
import { withErrors } from '../run.js';
import { withAdmin } from './client.js';
import { socketOption } from './entry.js';

interface FederationFlags {
  trustDomain?: string;
  bundleEndpointUrl?: string;
  bundleEndpointProfile?: string;
  endpointSpiffeId?: string;
  trustDomainBundlePath?: string;
  webCaFile?: string;
  keepBundle?: boolean;
  adminSocket?: string;
  json?: boolean;
}

const unix = (s: string) => (Number(s) > 0 ? new Date(Number(s) * 1000).toISOString() : undefined);

export function federationView(f: FederationMsg) {
  const r = f.relationship;
  return {
    trustDomain: r.trust_domain,
    bundleEndpointUrl: r.bundle_endpoint_url,
    bundleEndpointProfile: r.bundle_endpoint_profile,
    endpointSpiffeId: r.endpoint_spiffe_id || undefined,
    webCaBundle: r.web_ca_bundle ? true : undefined,
    source: r.source,
    bundleSequence: f.has_bundle ? f.bundle_sequence : undefined,
    bundleUpdatedAt: unix(f.bundle_updated_at),
    authorityExpiresAt: unix(f.authority_expires_at),
    refreshHintSeconds: Number(f.refresh_hint) || undefined,
    lastAttemptAt: unix(f.last_attempt_at),
    lastSuccessAt: unix(f.last_success_at),
    lastError: f.last_error ? { reason: f.last_error_reason, message: f.last_error, at: unix(f.last_error_at) } : undefined,
    consecutiveFailures: f.consecutive_failures,
    nextRefreshAt: unix(f.next_refresh_at),
  };
}

function readable(v: ReturnType<typeof federationView>): string[] {
  const line = (label: string, value: unknown) => (value === undefined ? [] : [`${label.padEnd(24)}: ${String(value)}`]);
  return [
    ...line('Trust domain', v.trustDomain),
    ...line('Bundle endpoint URL', v.bundleEndpointUrl),
    ...line('Bundle endpoint profile', v.bundleEndpointProfile),
    ...line('Endpoint SPIFFE ID', v.endpointSpiffeId),
    ...line('Web CA bundle', v.webCaBundle ? 'configured' : undefined),
    ...line('Source', v.source),
    ...line('Bundle sequence', v.bundleSequence ?? 'none stored'),
    ...line('Bundle updated at', v.bundleUpdatedAt),
    ...line('Authorities expire at', v.authorityExpiresAt),
    ...line('Refresh hint (s)', v.refreshHintSeconds),
    ...line('Last success', v.lastSuccessAt ?? 'never'),
    ...line('Last error', v.lastError ? `${v.lastError.at} [${v.lastError.reason}] ${v.lastError.message}` : undefined),
    ...line('Consecutive failures', v.consecutiveFailures || undefined),
    ...line('Next refresh', v.nextRefreshAt),
  ];
}

const trustDomainOption = (cmd: Command) => cmd.requiredOption('--trust-domain <td>', 'the federated trust domain, e.g. b.example');

/** `svidscope federation create|show|list|delete|refresh`: federation relationships on the server (SPIRE `federation`). */
export function registerFederationCommands(program: Command, io: Io): void {
  const federation = program.command('federation').description('manage federation relationships with other trust domains');

  trustDomainOption(federation.command('create').description('create a federation relationship and fetch the peer bundle'))
    .requiredOption('--bundle-endpoint-url <url>', 'the peer\'s bundle endpoint (https)')
    .option('--bundle-endpoint-profile <profile>', 'https_spiffe or https_web', 'https_spiffe')
    .option('--endpoint-spiffe-id <id>', 'https_spiffe: the SPIFFE ID the endpoint presents')
    .option('--trust-domain-bundle-path <file>', 'a bundle of the trust domain to bootstrap with (SPIFFE JSON or PEM)')
    .option('--web-ca-file <file>', 'https_web: PEM roots to validate the endpoint with instead of the system roots')
    .addOption(socketOption())
    .option('--json', 'print one JSON object')
    .action(withErrors(io, async (f: FederationFlags) => {
      const profile = f.bundleEndpointProfile ?? 'https_spiffe';
      if (profile !== 'https_spiffe' && profile !== 'https_web') throw usageError(`--bundle-endpoint-profile must be https_spiffe or https_web, got "${profile}"`);
      if (profile === 'https_spiffe' && !f.endpointSpiffeId) throw usageError('--endpoint-spiffe-id is required with --bundle-endpoint-profile https_spiffe');
      if (profile === 'https_web' && f.endpointSpiffeId) throw usageError('--endpoint-spiffe-id only applies to https_spiffe');
      if (profile !== 'https_web' && f.webCaFile) throw usageError('--web-ca-file only applies to https_web');
      const bundle = f.trustDomainBundlePath ? readFileSync(f.trustDomainBundlePath) : undefined;
      const webCa = f.webCaFile ? readFileSync(f.webCaFile, 'utf8') : '';
      const created = await withAdmin(f.adminSocket, (a) => a.call<FederationMsg>('CreateFederation', {
        relationship: {
          trust_domain: f.trustDomain, bundle_endpoint_url: f.bundleEndpointUrl, bundle_endpoint_profile: profile,
          endpoint_spiffe_id: f.endpointSpiffeId ?? '', web_ca_bundle: webCa,
        },
        bundle: bundle ?? Buffer.alloc(0),
      }));
      const view = federationView(created);
      printResult(io, f, { federation: view }, () => readable(view));
    }));

  trustDomainOption(federation.command('show').description('show one relationship and its refresh state'))
    .addOption(socketOption())
    .option('--json', 'print one JSON object')
    .action(withErrors(io, async (f: FederationFlags) => {
      const view = federationView(await withAdmin(f.adminSocket, (a) => a.call<FederationMsg>('GetFederation', { trust_domain: f.trustDomain })));
      printResult(io, f, { federation: view }, () => readable(view));
    }));

  federation.command('list').description('list relationships')
    .addOption(socketOption())
    .option('--json', 'print one JSON object')
    .action(withErrors(io, async (f: FederationFlags) => {
      const res = await withAdmin(f.adminSocket, (a) => a.call<{ federations: FederationMsg[] }>('ListFederations', {}));
      const views = res.federations.map(federationView);
      printResult(io, f, { federations: views }, () => [
        `Found ${views.length} federation ${views.length === 1 ? 'relationship' : 'relationships'}`, ...views.flatMap((v) => ['', ...readable(v)]),
      ]);
    }));

  trustDomainOption(federation.command('delete').description('delete a relationship (and the stored bundle, unless --keep-bundle)'))
    .option('--keep-bundle', 'keep the trust domain\'s stored bundle')
    .addOption(socketOption())
    .option('--json', 'print one JSON object')
    .action(withErrors(io, async (f: FederationFlags) => {
      await withAdmin(f.adminSocket, (a) => a.call('DeleteFederation', { trust_domain: f.trustDomain, keep_bundle: f.keepBundle ?? false }));
      printResult(io, f, { deleted: f.trustDomain }, () => [`Deleted federation relationship with ${f.trustDomain}`]);
    }));

  trustDomainOption(federation.command('refresh').description('fetch the peer bundle now'))
    .addOption(socketOption())
    .option('--json', 'print one JSON object')
    .action(withErrors(io, async (f: FederationFlags) => {
      const view = federationView(await withAdmin(f.adminSocket, (a) => a.call<FederationMsg>('RefreshFederation', { trust_domain: f.trustDomain })));
      printResult(io, f, { federation: view }, () => readable(view));
    }));
}
