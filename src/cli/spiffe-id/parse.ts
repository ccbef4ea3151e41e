import type { Command } from 'commander';
import { parseSpiffeId } from '../../identity-plane/spiffe/id/index.js';
import { printResult, type Io } from '../output.js';
import { withErrors } from '../run.js';

export function registerSpiffeIdParse(parent: Command, io: Io): void {
  parent
    .command('parse')
    .description('parse a SPIFFE ID: print its trust domain and path, or the rule it breaks')
    .argument('<id>', 'the SPIFFE ID, e.g. spiffe://example.org/ns/prod/sa/web')
    .option('--json', 'print one JSON object')
    .action(withErrors(io, async (id: string, opts: { json?: boolean }) => {
      const parsed = parseSpiffeId(id);
      printResult(io, opts, { spiffeId: parsed.toString(), trustDomain: parsed.trustDomain.name, path: parsed.path }, () => [
        `spiffe id:    ${parsed}`,
        `trust domain: ${parsed.trustDomain.name}`,
        `path:         ${parsed.path === '' ? '(none: the trust domain itself)' : parsed.path}`,
      ]);
    }));
}
