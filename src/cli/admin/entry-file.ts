/**
 * `svidscope entry create --file`: registration entries from a JSON or YAML file, created through
 * BatchCreateEntries in chunks of MAX_ENTRY_BATCH (each chunk one datastore transaction). The file
 * holds a list of entries (or `{ entries: [...] }`) with the field names `entry show --json`
 * prints, so a listing can be edited and loaded back.
 */
import { parse as parseYaml } from 'yaml';
import { errorCatalog, ExitCode, SvidscopeError, type ErrorCode } from '../../common/errors/catalog.js';
import { MAX_ENTRY_BATCH, type BatchCreateEntriesResultMsg, type EntryMsg } from '../../identity-plane/server-api/messages.js';
import { parseSelector } from '../../identity-plane/server/registration/validate.js';
import { readInput } from '../files.js';
import type { AdminClient } from './client.js';

/** The most entries one file may hold: a typo'd generator must not tie the server up for minutes. */
export const MAX_FILE_ENTRIES = 100_000;

const KEYS = new Set(['id', 'spiffeId', 'parentId', 'selectors', 'x509SvidTtl', 'jwtSvidTtl', 'dnsNames', 'federatesWith', 'admin', 'downstream', 'expiresAt', 'hint',
  'revision', 'createdAt']); // the last two are output fields of `entry show`, accepted and ignored

function bad(where: string, message: string): SvidscopeError {
  return new SvidscopeError('usage', `${where}: ${message}`);
}

function strings(v: unknown, where: string): string[] {
  if (v === undefined) return [];
  if (!Array.isArray(v) || !v.every((s) => typeof s === 'string')) throw bad(where, 'must be a list of strings');
  return v;
}

function whole(v: unknown, where: string): number {
  if (v === undefined) return 0;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw bad(where, 'must be a whole number >= 0');
  return v;
}

function flag(v: unknown, where: string): boolean {
  if (v === undefined) return false;
  if (typeof v !== 'boolean') throw bad(where, 'must be true or false');
  return v;
}

function selector(v: unknown, where: string): { type: string; value: string } {
  if (typeof v === 'string') return parseSelector(v);
  if (v && typeof v === 'object' && typeof (v as { type?: unknown }).type === 'string' && typeof (v as { value?: unknown }).value === 'string') {
    return { type: (v as { type: string }).type, value: (v as { value: string }).value };
  }
  throw bad(where, 'must be "type:value" or { type, value }');
}

/** Parses the file into admin-API entry messages; shape errors name the entry index and field. */
export function readEntryFile(file: string): Partial<EntryMsg>[] {
  let doc: unknown;
  try {
    doc = parseYaml(readInput(file, 'entry file').toString('utf8'));
  } catch (err) {
    if (err instanceof SvidscopeError) throw err;
    throw new SvidscopeError('usage', `entry file ${file} is neither JSON nor YAML: ${(err as Error).message}`);
  }
  const list = Array.isArray(doc) ? doc : (doc as { entries?: unknown } | null)?.entries;
  if (!Array.isArray(list)) throw new SvidscopeError('usage', `entry file ${file} must hold a list of entries or { entries: [...] }`);
  if (list.length === 0) throw new SvidscopeError('usage', `entry file ${file} holds no entries`);
  if (list.length > MAX_FILE_ENTRIES) throw new SvidscopeError('usage', `entry file ${file} holds ${list.length} entries; at most ${MAX_FILE_ENTRIES} (MAX_FILE_ENTRIES) per file`);
  return list.map((raw, i) => {
    const where = `${file}: entries[${i}]`;
    if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw bad(where, 'must be an object');
    const e = raw as Record<string, unknown>;
    const unknown = Object.keys(e).find((k) => !KEYS.has(k));
    if (unknown) throw bad(where, `unknown field "${unknown}" (fields: ${[...KEYS].slice(0, -2).join(', ')})`);
    for (const k of ['id', 'spiffeId', 'parentId', 'hint'] as const) {
      if (e[k] !== undefined && typeof e[k] !== 'string') throw bad(`${where}.${k}`, 'must be a string');
    }
    if (e.selectors !== undefined && !Array.isArray(e.selectors)) throw bad(`${where}.selectors`, 'must be a list');
    return {
      id: (e.id as string | undefined) ?? '',
      spiffe_id: (e.spiffeId as string | undefined) ?? '',
      parent_id: (e.parentId as string | undefined) ?? '',
      selectors: ((e.selectors as unknown[] | undefined) ?? []).map((s, j) => selector(s, `${where}.selectors[${j}]`)),
      x509_svid_ttl: whole(e.x509SvidTtl, `${where}.x509SvidTtl`),
      jwt_svid_ttl: whole(e.jwtSvidTtl, `${where}.jwtSvidTtl`),
      dns_names: strings(e.dnsNames, `${where}.dnsNames`),
      federates_with: strings(e.federatesWith, `${where}.federatesWith`),
      admin: flag(e.admin, `${where}.admin`),
      downstream: flag(e.downstream, `${where}.downstream`),
      expires_at: String(whole(e.expiresAt, `${where}.expiresAt`)),
      hint: (e.hint as string | undefined) ?? '',
    };
  });
}

/** Creates the entries batch by batch; results keep the file's order. */
export async function createEntriesInBatches(admin: AdminClient, list: Partial<EntryMsg>[]): Promise<BatchCreateEntriesResultMsg[]> {
  const results: BatchCreateEntriesResultMsg[] = [];
  for (let i = 0; i < list.length; i += MAX_ENTRY_BATCH) {
    const res = await admin.call<{ results: BatchCreateEntriesResultMsg[] }>('BatchCreateEntries', { entries: list.slice(i, i + MAX_ENTRY_BATCH) });
    results.push(...res.results);
  }
  return results;
}

/** The exit code of a partly refused file: the first refusal's, from the catalogue. */
export function exitCodeOf(results: readonly BatchCreateEntriesResultMsg[]): number {
  const first = results.find((r) => r.status_code !== 0);
  if (!first) return ExitCode.OK;
  return first.error_code in errorCatalog ? errorCatalog[first.error_code as ErrorCode].exit : ExitCode.REMOTE;
}
