// The one config reader: the same checks and wording under both policies, throwing at the first
// problem (binaries' configs) or collecting every problem for one report (chaos experiments).
import { describe, expect, it } from 'vitest';
import { ConfigReader } from '../../src/common/config/load.js';
import { SvidscopeError } from '../../src/common/errors/catalog.js';

class Collected extends Error {
  constructor(readonly problems: readonly string[]) {
    super(problems.join('; '));
  }
}

const doc = {
  name: 5,
  mode: 'loud',
  rate: 'fast',
  count: 2.5,
  batch: 0,
  on: 'yes',
  wait: 'soon',
  period: '5ms',
  tags: ['a', 1],
  steps: [{ agent: 'a', extra: true }, 'not a mapping', { agent: { nested: 1 } }],
  colour: 'red',
};

/** Reads `doc` with every kind of check, in one order, so both policies see the same first problem. */
function readAll(r: ConfigReader): void {
  r.optionalString('name');
  r.requiredString('title', 'a sentence');
  r.oneOf('mode', ['quiet', 'normal'] as const, 'normal');
  r.requiredOneOf('fault', ['kill', 'freeze'] as const);
  r.number('rate', 1);
  r.number('count', 1, { integer: true });
  r.number('batch', 5, { min: 1, max: 50, unit: 'CSRs per call' });
  r.boolean('on', false);
  r.durationMs('wait', 1000);
  r.durationMs('period', '1s', { min: '10ms', max: '1s' });
  r.durationMs('within');
  r.strings('tags');
  for (const step of r.items('steps')) {
    step.requiredString('agent');
    step.rejectUnknown();
  }
  r.rejectUnknown();
}

const allProblems = [
  'name: expected a string (got 5)',
  'title: is required (a sentence)',
  'mode: must be one of quiet, normal (got "loud")',
  'fault: is required (one of kill, freeze)',
  'rate: expected a number (got "fast")',
  'count: expected a whole number (got 2.5)',
  'batch: must be from 1 to 50 CSRs per call (got 0)',
  'on: expected true or false (got "yes")',
  'wait: expected a duration such as 500ms, 30s, 1h30m or 7d (got "soon")',
  'period: must be from 10ms to 1s (got "5ms")',
  'within: is required (a duration such as 30s)',
  'tags: expected a list of strings (got ["a",1])',
  'steps[1]: expected a mapping (got "not a mapping")',
  'steps[0].extra: unknown key (known here: agent)',
  'steps[2].agent: expected a string (got {"nested":1})',
  'colour: unknown key (known here: batch, count, fault, mode, name, on, period, rate, steps, tags, title, wait, within)',
];

describe('config reader', () => {
  it('collect: every problem, each naming its key path, reported once by done()', () => {
    const r = ConfigReader.collecting(doc, (problems) => new Collected(problems));
    readAll(r);
    expect(r.problems).toEqual(allProblems);
    expect(() => r.done()).toThrow(Collected);
    try {
      r.done();
    } catch (err) {
      expect((err as Collected).problems).toEqual(allProblems);
    }
  });

  it('first: throws config-invalid at the first problem, in the same wording', () => {
    const r = new ConfigReader(doc);
    expect(() => readAll(r)).toThrow(expect.objectContaining({ code: 'config-invalid', message: `config: ${allProblems[0]}` }) as SvidscopeError);
    expect(r.problems).toEqual([]);
  });

  it('collect: a failed read returns its fallback, in the unit of the result', () => {
    const r = ConfigReader.collecting({ rate: 'fast', wait: 'soon', mode: 'loud' }, (p) => new Collected(p));
    expect(r.number('rate', 10)).toBe(10);
    expect(r.durationMs('wait', 30_000)).toBe(30_000);
    expect(r.duration('wait', 30)).toBe(30);
    expect(r.durationMs('missing', '2m')).toBe(120_000);
    expect(r.oneOf('mode', ['a', 'b'] as const, 'b')).toBe('b');
    expect(r.requiredOneOf('mode', ['a', 'b'] as const)).toBeUndefined();
    expect(r.problems).toHaveLength(5);
  });

  it('a document that is not a mapping is a problem; fail() stops with everything so far', () => {
    const r = ConfigReader.collecting(['a'], (p) => new Collected(p));
    expect(r.problems).toEqual(['expected a mapping at the top level (got ["a"])']);
    expect(() => r.fail('title', 'cannot go on')).toThrow(expect.objectContaining({ problems: ['expected a mapping at the top level (got ["a"])', 'title: cannot go on'] }) as Collected);
  });

  it('nested sections and list items name the whole path; a valid read collects nothing', () => {
    const r = ConfigReader.collecting({ a: { b: [{ c: 1 }, { c: 'x' }, { c: 'y' }] } }, (p) => new Collected(p));
    const items = r.section('a').items('b');
    expect(items.map((i) => i.path('c'))).toEqual(['a.b[0].c', 'a.b[1].c', 'a.b[2].c']);
    expect(items.map((i) => i.durationMs('c', 0))).toEqual([1000, 0, 0]);
    expect(r.problems).toEqual([
      'a.b[1].c: expected a duration such as 500ms, 30s, 1h30m or 7d (got "x")',
      'a.b[2].c: expected a duration such as 500ms, 30s, 1h30m or 7d (got "y")',
    ]);
    const ok = ConfigReader.collecting({ t: 'x', d: '1h30m' }, (p) => new Collected(p));
    expect([ok.requiredString('t'), ok.duration('d', 0)]).toEqual(['x', 5400]);
    ok.rejectUnknown();
    expect(() => ok.done()).not.toThrow();
  });
});
