import type { Command } from 'commander';
import type { CaStatusMsg, UpstreamAuthorityMsg } from '../../identity-plane/server-api/messages.js';
import { printResult, usageError, type Io } from '../output.js';
import { withErrors } from '../run.js';
import { withAdmin } from './client.js';
import { socketOption } from './entry.js';

interface AuthorityFlags {
  kind?: string;
  keyId?: string;
  upstream?: boolean;
  subjectKeyId?: string;
  adminSocket?: string;
  json?: boolean;
}

const unix = (s: string) => new Date(Number(s) * 1000).toISOString();

export function authorityView(s: CaStatusMsg['slots'][number]) {
  return { kind: s.kind, phase: s.phase, keyId: s.key_id, notBefore: unix(s.not_before), notAfter: unix(s.not_after), withheld: s.withheld, tainted: s.tainted ?? false, revoked: s.revoked ?? false };
}
type AuthorityView = ReturnType<typeof authorityView>;

const unixMs = (s: string | undefined) => (s && s !== '0' ? new Date(Number(s)).toISOString() : undefined);

export function upstreamView(u: UpstreamAuthorityMsg) {
  return { subjectKeyId: u.subject_key_id, notAfter: unix(u.not_after), configured: u.configured, inUse: u.in_use || undefined, tainted: u.tainted, revoked: u.revoked,
    taintedAt: unixMs(u.tainted_at_ms), revokedAt: unixMs(u.revoked_at_ms) };
}
type UpstreamView = ReturnType<typeof upstreamView>;

function readableUpstream(views: UpstreamView[]): string[] {
  if (views.length === 0) return [];
  const state = (v: UpstreamView) => (v.revoked ? 'revoked' : v.tainted ? 'tainted' : v.configured ? 'configured' : v.inUse ? 'in use' : 'in bundle');
  const rows = [['UPSTREAM SUBJECT KEY ID', 'NOT AFTER', 'STATE'], ...views.map((v) => [v.subjectKeyId, v.notAfter, state(v)])];
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return ['', ...rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join('  '))];
}

const label = (kind: string) => (kind === 'x509' ? 'X.509 CA' : 'JWT key');

function readable(views: AuthorityView[]): string[] {
  const rows = [['KIND', 'PHASE', 'KEY ID', 'NOT AFTER', 'BUNDLE'], ...views.map((v) => [v.kind, v.phase, v.keyId, v.notAfter, v.revoked ? 'revoked' : v.withheld ? 'withheld' : v.tainted ? 'tainted' : 'published'])];
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join('  '));
}

const kindOption = (cmd: Command) => cmd
  .requiredOption('--kind <kind>', 'x509 (the X.509 CA) or jwt (the JWT signing key)')
  .option('--key-id <id>', 'the key (from `authority list`); default: the active key of --kind');

/**
 * `svidscope authority list|withhold|publish`: the server's own signing keys and whether each is
 * published in the trust bundle. Withholding the active key simulates a bad rotation (game days).
 * `svidscope authority prepare|activate|taint|revoke`: the key-compromise response, one step each.
 */
export function registerAuthorityCommands(program: Command, io: Io): void {
  const authority = program.command('authority').description('the server\'s signing keys (X.509 CAs, JWT keys) and their publication in the trust bundle');

  authority.command('list').description('list the server\'s signing keys, their phase and whether the bundle holds them')
    .addOption(socketOption())
    .option('--json', 'print one JSON object')
    .action(withErrors(io, async (f: AuthorityFlags) => {
      const res = await withAdmin(f.adminSocket, (a) => a.call<CaStatusMsg>('CaStatus', {}));
      const views = res.slots.map(authorityView);
      const upstream = (res.upstream_authorities ?? []).map(upstreamView);
      printResult(io, f, { authorities: views, upstreamAuthorities: upstream }, () => [...readable(views), ...readableUpstream(upstream)]);
    }));

  for (const [verb, withhold, description] of [
    ['withhold', true, 'withhold a signing key from the trust bundle; an active key keeps signing, so what it signs stops verifying (a bad rotation, for game days)'],
    ['publish', false, 'publish a withheld signing key in the trust bundle again'],
  ] as const) {
    kindOption(authority.command(verb).description(description))
      .addOption(socketOption())
      .option('--json', 'print one JSON object')
      .action(withErrors(io, async (f: AuthorityFlags) => {
        if (f.kind !== 'x509' && f.kind !== 'jwt') throw usageError(`--kind must be x509 or jwt, got "${f.kind ?? ''}"`);
        if (f.keyId !== undefined && f.keyId === '') throw usageError('--key-id must not be empty (omit it for the active key)');
        const res = await withAdmin(f.adminSocket, (a) => a.call<CaStatusMsg>('WithholdAuthority', { kind: f.kind, key_id: f.keyId ?? '', withhold }));
        const views = res.slots.map(authorityView);
        const key = views.find((v) => v.kind === f.kind && (f.keyId ? v.keyId === f.keyId : v.phase === 'active'));
        printResult(io, f, { authority: key, authorities: views }, () => [
          key
            ? `${withhold ? 'Withheld' : 'Published'} ${key.phase} ${label(key.kind)} ${key.keyId} ${withhold ? 'from' : 'in'} the trust bundle`
            : `${withhold ? 'Withheld' : 'Published'} ${label(f.kind!)} ${f.keyId ?? ''}`.trimEnd(),
          '',
          ...readable(views),
        ]);
        if (!f.json && withhold && key?.phase === 'active') io.err(`warning: the active ${label(key.kind)} keeps signing; SVIDs it signs will not verify against the bundle`);
      }));
  }

  for (const [op, description] of [
    ['prepare', 'publish a new signing key of --kind without signing with it (wait for it to reach every agent and peer before activate)'],
    ['activate', 'switch signing to the prepared key (refused unless --key-id, default the prepared key, is prepared)'],
    ['taint', 'mark a non-active key compromised (or, with --upstream, an upstream X.509 authority nothing signs under any more): agents replace every SVID it signed, or whose chain passes through it, at once'],
    ['revoke', 'take a tainted, non-active key (or, with --upstream, a tainted upstream X.509 authority) out of the trust bundle for good'],
  ] as const) {
    const cmd = authority.command(op).description(description)
      .option('--kind <kind>', 'x509 (the X.509 CA) or jwt (the JWT signing key); required unless --upstream')
      .option('--key-id <id>', op === 'activate' ? 'the prepared key (default)' : 'the key (from `authority list`)');
    if (op === 'taint' || op === 'revoke') {
      cmd.option('--upstream', 'the authority is an upstream X.509 authority in the bundle (one this server\'s CAs were signed under), named by --subject-key-id')
        .option('--subject-key-id <hex>', 'with --upstream: its subject key identifier (from `authority list`; colons allowed)');
    }
    cmd
      .addOption(socketOption())
      .option('--json', 'print one JSON object')
      .action(withErrors(io, async (f: AuthorityFlags) => {
        if (f.upstream) return upstreamStep(io, op as 'taint' | 'revoke', f);
        if (f.subjectKeyId !== undefined) throw usageError('--subject-key-id names an upstream authority: add --upstream');
        if (f.kind !== 'x509' && f.kind !== 'jwt') throw usageError(`--kind must be x509 or jwt, got "${f.kind ?? ''}"`);
        if (op === 'prepare' && f.keyId !== undefined) throw usageError('prepare takes no --key-id: it creates the new key');
        if ((op === 'taint' || op === 'revoke') && !f.keyId) throw usageError(`${op} needs --key-id: name the compromised key (from \`authority list\`), or --upstream --subject-key-id for an upstream authority`);
        const before = op === 'prepare' || (op === 'activate' && !f.keyId)
          ? (await withAdmin(f.adminSocket, (a) => a.call<CaStatusMsg>('CaStatus', {}))).slots.map((s) => s.key_id)
          : [];
        const res = await withAdmin(f.adminSocket, (a) => a.call<CaStatusMsg>('AuthorityLifecycle', { kind: f.kind, operation: op, key_id: f.keyId ?? '' }));
        const views = res.slots.map(authorityView);
        const key = f.keyId ? views.find((v) => v.keyId === f.keyId)
          : op === 'prepare' ? views.find((v) => v.kind === f.kind && v.phase === 'prepared')
          : views.find((v) => v.kind === f.kind && v.phase === 'active' && (before.length === 0 || before.includes(v.keyId)));
        printResult(io, f, { operation: op, authority: key, authorities: views }, () => [
          `${op}: ${label(f.kind!)} ${key?.keyId ?? f.keyId ?? ''} is now ${key ? (key.revoked ? 'revoked' : key.tainted ? `tainted (${key.phase})` : key.phase) : 'gone'}`,
          '',
          ...readable(views),
        ]);
      }));
  }
}

/** `authority taint|revoke --upstream --subject-key-id <hex>`. */
async function upstreamStep(io: Io, op: 'taint' | 'revoke', f: AuthorityFlags): Promise<void> {
  if (f.kind !== undefined && f.kind !== 'x509') throw usageError('an upstream authority is an X.509 authority: --upstream goes with --kind x509 (or no --kind)');
  if (f.keyId !== undefined) throw usageError('an upstream authority is named by --subject-key-id, not --key-id');
  if (!f.subjectKeyId) throw usageError(`${op} --upstream needs --subject-key-id (from \`authority list\`)`);
  const res = await withAdmin(f.adminSocket, (a) => a.call<CaStatusMsg>('AuthorityLifecycle', { kind: 'x509', operation: op, upstream: true, subject_key_id: f.subjectKeyId }));
  const views = res.slots.map(authorityView);
  const upstream = (res.upstream_authorities ?? []).map(upstreamView);
  const wanted = f.subjectKeyId.replace(/:/g, '').toLowerCase();
  const key = upstream.find((u) => u.subjectKeyId === wanted);
  printResult(io, f, { operation: op, upstreamAuthority: key, authorities: views, upstreamAuthorities: upstream }, () => [
    `${op}: upstream X.509 authority ${key?.subjectKeyId ?? wanted} is now ${key ? (key.revoked ? 'revoked (out of the trust bundle)' : key.tainted ? 'tainted' : 'unchanged') : 'gone'}`,
    '',
    ...readable(views),
    ...readableUpstream(upstream),
  ]);
}
