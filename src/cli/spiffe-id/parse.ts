import type { Command } from 'commander';
import { parseSpiffeIdBounded } from '../../identity-plane/spiffe/id/index.js';
import { printResult, type Io } from '../output.js';
import { withErrors } from '../run.js';

export function registerSpiffeIdParse(parent: Command, io: Io): void {
  parent
    .command('parse')
    .description('parse a SPIFFE ID: print its trust domain and path, or the rule it breaks (including the size limits: 2048 bytes, trust domain 255)')
    .argument('<id>', 'the SPIFFE ID, e.g. spiffe://example.org/ns/prod/sa/web')
    .option('--json', 'print one JSON object')
    .action(withErrors(io, async (id: string, opts: { json?: boolean }) => {
      // Held to the standard's size limits, as everywhere an ID enters svidscope (the library parser
      // accepts longer ones when reading SVIDs, as the standard asks of readers).
      const parsed = parseSpiffeIdBounded(id);
      printResult(io, opts, { spiffeId: parsed.toString(), trustDomain: parsed.trustDomain.name, path: parsed.path }, () => [
        `spiffe id:    ${parsed}`,
        `trust domain: ${parsed.trustDomain.name}`,
        `path:         ${parsed.path === '' ? '(none: the trust domain itself)' : parsed.path}`,
      ]);
    }));
}
