import { Command, Option } from 'commander';
import { parseSelector } from '../../identity-plane/server/registration/validate.js';
import { MAX_ENTRY_BATCH, type EntryMsg } from '../../identity-plane/server-api/messages.js';
import { CommandExit, printResult, usageError, type Io } from '../output.js';
import { createEntriesInBatches, exitCodeOf, readEntryFile } from './entry-file.js';
import { withErrors } from '../run.js';
import { withAdmin } from './client.js';

const collect = (value: string, previous: string[] = []) => [...previous, value];

interface EntryFlags {
  entryId?: string;
  spiffeId?: string;
  parentId?: string;
  selector?: string[];
  x509SvidTtl?: string;
  jwtSvidTtl?: string;
  dnsName?: string[];
  federatesWith?: string[];
  admin?: boolean;
  downstream?: boolean;
  expiresAt?: string;
  hint?: string;
  adminSocket?: string;
  json?: boolean;
}

function entryOptions(cmd: Command): Command {
  return cmd
    .option('--spiffe-id <id>', 'the SPIFFE ID the entry issues')
    .option('--parent-id <id>', 'the agent (or parent entry) SPIFFE ID')
    .option('--selector <type:value>', 'a selector, e.g. unix:uid:1000 (repeatable)', collect)
    .option('--x509-svid-ttl <seconds>', 'X509-SVID TTL in seconds (0 = server default)')
    .option('--jwt-svid-ttl <seconds>', 'JWT-SVID TTL in seconds (0 = server default)')
    .option('--dns-name <name>', 'a DNS SAN (repeatable)', collect)
    .option('--federates-with <td>', 'a federated trust domain whose bundle the workload receives (repeatable)', collect)
    .option('--admin', 'grant the admin API to this identity')
    .option('--downstream', 'mark the identity as a downstream server')
    .option('--expires-at <unix-seconds>', 'when the entry expires (0 = never)')
    .option('--hint <text>', 'a hint for workloads holding several identities');
}

function int(value: string | undefined, flag: string): number {
  if (value === undefined) return 0;
  if (!/^\d+$/.test(value)) throw usageError(`${flag} must be a whole number, got "${value}"`);
  return Number(value);
}

function toMessage(f: EntryFlags): Partial<EntryMsg> {
  return {
    id: f.entryId ?? '',
    spiffe_id: f.spiffeId ?? '',
    parent_id: f.parentId ?? '',
    selectors: (f.selector ?? []).map(parseSelector),
    x509_svid_ttl: int(f.x509SvidTtl, '--x509-svid-ttl'),
    jwt_svid_ttl: int(f.jwtSvidTtl, '--jwt-svid-ttl'),
    dns_names: f.dnsName ?? [],
    federates_with: f.federatesWith ?? [],
    admin: f.admin ?? false,
    downstream: f.downstream ?? false,
    expires_at: String(int(f.expiresAt, '--expires-at')),
    hint: f.hint ?? '',
  };
}

export function entryView(e: EntryMsg) {
  return {
    id: e.id,
    spiffeId: e.spiffe_id,
    parentId: e.parent_id,
    selectors: e.selectors.map((s) => `${s.type}:${s.value}`),
    x509SvidTtl: e.x509_svid_ttl,
    jwtSvidTtl: e.jwt_svid_ttl,
    dnsNames: e.dns_names,
    federatesWith: e.federates_with,
    admin: e.admin,
    downstream: e.downstream,
    expiresAt: Number(e.expires_at),
    hint: e.hint,
    revision: Number(e.revision_number),
    createdAt: Number(e.created_at),
  };
}

function readable(e: ReturnType<typeof entryView>): string[] {
  return [
    `Entry ID         : ${e.id}`,
    `SPIFFE ID        : ${e.spiffeId}`,
    `Parent ID        : ${e.parentId}`,
    `Revision         : ${e.revision}`,
    `X509-SVID TTL    : ${e.x509SvidTtl || 'default'}`,
    `JWT-SVID TTL     : ${e.jwtSvidTtl || 'default'}`,
    ...e.selectors.map((s) => `Selector         : ${s}`),
    ...e.dnsNames.map((d) => `DNS name         : ${d}`),
    ...e.federatesWith.map((f) => `FederatesWith    : ${f}`),
    ...(e.admin ? ['Admin            : true'] : []),
    ...(e.downstream ? ['Downstream       : true'] : []),
    ...(e.expiresAt ? [`Expires at       : ${new Date(e.expiresAt * 1000).toISOString()}`] : []),
    ...(e.hint ? [`Hint             : ${e.hint}`] : []),
  ];
}

async function createFromFile(io: Io, file: string, f: EntryFlags): Promise<void> {
  const single = (['entryId', 'spiffeId', 'parentId', 'selector', 'x509SvidTtl', 'jwtSvidTtl', 'dnsName', 'federatesWith', 'admin', 'downstream', 'expiresAt', 'hint'] as const)
    .filter((k) => f[k] !== undefined);
  if (single.length) throw usageError(`--file takes the entries from the file; drop --${single.map((k) => k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)).join(', --')}`);
  const list = readEntryFile(file);
  const results = await withAdmin(f.adminSocket, (a) => createEntriesInBatches(a, list));
  const created = results.filter((r) => r.status_code === 0).length;
  if (f.json) {
    io.out(JSON.stringify({
      valid: created === results.length, created, refused: results.length - created,
      results: results.map((r, index) => (r.entry ? { index, entry: entryView(r.entry) } : { index, error: r.error_code || 'internal', message: r.status_message })),
    }));
  } else {
    results.forEach((r, i) => (r.entry ? io.out(`created ${r.entry.id} ${r.entry.spiffe_id}`) : io.err(`error: entries[${i}]: ${r.status_message} [${r.error_code || 'internal'}]`)));
    io.out(`Created ${created} of ${results.length} entries`);
  }
  const exit = exitCodeOf(results);
  if (exit !== 0) throw new CommandExit(exit);
}

const socketOption = () => new Option('--admin-socket <path>', 'the server admin socket (default .svidscope/server/admin.sock, or $SVIDSCOPE_ADMIN_SOCKET)');

export function registerEntryCommands(program: Command, io: Io): void {
  const entry = program.command('entry').description('manage registration entries on the server');

  entryOptions(entry.command('create').description('create a registration entry, or many from a file'))
    .option('--entry-id <id>', 'use this entry ID instead of a generated one')
    .option('--file <entries.json|yaml>', `create every entry in this JSON or YAML list (same fields as \`entry show --json\`), ${MAX_ENTRY_BATCH} per transaction`)
    .addOption(socketOption())
    .option('--json', 'print one JSON object')
    .action(withErrors(io, async (f: EntryFlags & { file?: string }) => {
      if (f.file !== undefined) return createFromFile(io, f.file, f);
      if (!f.spiffeId || !f.parentId) throw usageError('--spiffe-id and --parent-id are required');
      if (!f.selector?.length) throw usageError('at least one --selector is required');
      const created = await withAdmin(f.adminSocket, (a) => a.call<EntryMsg>('CreateEntry', { entry: toMessage(f) }));
      const view = entryView(created);
      printResult(io, f, { entry: view }, () => readable(view));
    }));

  entryOptions(entry.command('update').description('replace the fields of an entry (unset flags take their defaults)'))
    .requiredOption('--entry-id <id>', 'the entry to update')
    .addOption(socketOption())
    .option('--json', 'print one JSON object')
    .action(withErrors(io, async (f: EntryFlags) => {
      const updated = await withAdmin(f.adminSocket, async (a) => {
        const current = entryView(await a.call<EntryMsg>('GetEntry', { id: f.entryId }));
        const merged: EntryFlags = {
          entryId: f.entryId, spiffeId: f.spiffeId ?? current.spiffeId, parentId: f.parentId ?? current.parentId,
          selector: f.selector ?? current.selectors, x509SvidTtl: f.x509SvidTtl ?? String(current.x509SvidTtl),
          jwtSvidTtl: f.jwtSvidTtl ?? String(current.jwtSvidTtl), dnsName: f.dnsName ?? current.dnsNames,
          federatesWith: f.federatesWith ?? current.federatesWith, admin: f.admin ?? current.admin, downstream: f.downstream ?? current.downstream,
          expiresAt: f.expiresAt ?? String(current.expiresAt), hint: f.hint ?? current.hint,
        };
        return a.call<EntryMsg>('UpdateEntry', { entry: toMessage(merged) });
      });
      const view = entryView(updated);
      printResult(io, f, { entry: view }, () => readable(view));
    }));

  entry.command('show').description('show entries, all or filtered')
    .option('--entry-id <id>', 'one entry by ID')
    .option('--spiffe-id <id>', 'entries with this SPIFFE ID')
    .option('--parent-id <id>', 'entries with this parent')
    .option('--selector <type:value>', 'entries carrying this selector (repeatable)', collect)
    .addOption(socketOption())
    .option('--json', 'print one JSON object')
    .action(withErrors(io, async (f: EntryFlags) => {
      const list = await withAdmin(f.adminSocket, async (a) => {
        if (f.entryId) return [await a.call<EntryMsg>('GetEntry', { id: f.entryId })];
        const res = await a.call<{ entries: EntryMsg[] }>('ListEntries', {
          filter: { by_spiffe_id: f.spiffeId ?? '', by_parent_id: f.parentId ?? '', by_selectors: (f.selector ?? []).map(parseSelector) },
        });
        return res.entries;
      });
      const views = list.map(entryView);
      printResult(io, f, { entries: views }, () => [`Found ${views.length} ${views.length === 1 ? 'entry' : 'entries'}`, ...views.flatMap((v) => ['', ...readable(v)])]);
    }));

  entry.command('delete').description('delete an entry')
    .requiredOption('--entry-id <id>', 'the entry to delete')
    .addOption(socketOption())
    .option('--json', 'print one JSON object')
    .action(withErrors(io, async (f: EntryFlags) => {
      await withAdmin(f.adminSocket, (a) => a.call('DeleteEntry', { id: f.entryId }));
      printResult(io, f, { deleted: f.entryId }, () => [`Deleted entry ${f.entryId}`]);
    }));
}

export { socketOption };
