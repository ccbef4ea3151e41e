// The key-compromise drill's pieces that need no stack: its step validation and how it reads
// the components' metrics. The drill itself runs against `svidscope up` in the game-day suite.
import { describe, expect, it } from 'vitest';
import { sampleSum } from '../../src/chaos/faults/propagation.js';
import { parseExperimentText } from '../../src/chaos/index.js';
import { problems } from './support.js';

const experiment = (step: string) => `
title: t
description: d
blast-radius: { servers: [server] }
steady-state-hypothesis: { probes: [{ name: p, type: promql, query: up, tolerance: 1 }] }
method:
  - ${step}
`;

describe('key-compromise drill', () => {
  it('accepts the documented step and refuses a bad kind or a timeout under 5s', () => {
    const parsed = parseExperimentText(experiment('{ fault: key-compromise, server: server, kind: jwt, timeout: 90s, duration: 1s }'), 't');
    expect(parsed.method[0]).toMatchObject({ fault: 'key-compromise', server: 'server', kind: 'jwt', timeoutMs: 90_000 });
    expect(parseExperimentText(experiment('{ fault: key-compromise, duration: 1s }'), 't').method[0]).toMatchObject({ server: 'server', kind: 'x509', timeoutMs: 120_000 });
    expect(problems(experiment('{ fault: key-compromise, kind: rsa, duration: 1s }'))).toEqual(['method[0].kind: must be one of x509, jwt (got "rsa")']);
    expect(problems(experiment('{ fault: key-compromise, timeout: 1s, duration: 1s }'))).toEqual(['method[0].timeout: must be at least 5s, as each wait spans at least one agent sync (got "1s")']);
  });

  it('sums the samples of one metric whose labels match, and counts an absent series as 0', () => {
    const text = [
      '# HELP svidscope_agent_svids_by_authority Unexpired SVIDs held, by signing authority.',
      '# TYPE svidscope_agent_svids_by_authority gauge',
      'svidscope_agent_svids_by_authority{kind="x509",authority_key_id="aa11"} 3',
      'svidscope_agent_svids_by_authority{kind="x509",authority_key_id="bb22"} 4',
      'svidscope_agent_svids_by_authority{kind="jwt",authority_key_id="aa11"} 5',
      'svidscope_agent_svids_by_authority_oldest 99',
      'svidscope_agent_bundle_sequence 17',
    ].join('\n');
    expect(sampleSum(text, 'svidscope_agent_svids_by_authority', { kind: 'x509', authority_key_id: 'aa11' })).toBe(3);
    expect(sampleSum(text, 'svidscope_agent_svids_by_authority', { kind: 'x509' })).toBe(7);
    expect(sampleSum(text, 'svidscope_agent_svids_by_authority')).toBe(12); // not the _oldest family
    expect(sampleSum(text, 'svidscope_agent_bundle_sequence')).toBe(17);
    expect(sampleSum(text, 'svidscope_agent_svids_by_authority', { authority_key_id: 'cc33' })).toBe(0);
  });
});
