/**
 * The SPIN models of the legacy (GlusterFS) and the safe migration protocol (model/*.pml).
 * The legacy model must yield the stale-read counterexample; the safe model must pass an exhaustive
 * check; each planted mutation of the safe model must fail it; step names must match the code's.
 */
import test, { after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { PACKAGE_ROOT } from '../src/cli/state.js';
import { LEGACY_STEPS, SAFE_STEPS } from '../src/migration/steps.js';

const MODELS = path.join(PACKAGE_ROOT, 'model');
/** The checks' scratch directories (the model, pan and its trail), removed at the end. */
const scratch: string[] = [];
after(() => {
  for (const d of scratch) fs.rmSync(d, { recursive: true, force: true });
});

interface PanResult {
  errors: number;
  states: number;
  output: string;
  dir: string;
}

/** spin -a, compile the verifier, run it. `bfs` finds the shortest counterexample. */
function check(model: string, defines: string[] = [], bfs = false): PanResult {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dhtfs-spin-'));
  scratch.push(dir);
  fs.copyFileSync(path.join(MODELS, model), path.join(dir, model));
  execFileSync('spin', [...defines.map((d) => `-D${d}`), '-a', model], { cwd: dir });
  execFileSync('gcc', ['-O2', '-w', '-DSAFETY', ...(bfs ? ['-DBFS'] : []), '-o', 'pan', 'pan.c'], { cwd: dir });
  let output: string;
  try {
    output = execFileSync('./pan', ['-m200000'], { cwd: dir, encoding: 'utf8' });
  } catch (e) {
    output = String((e as { stdout?: string }).stdout ?? '');
  }
  const errors = Number(/errors: (\d+)/.exec(output)?.[1] ?? NaN);
  const states = Number(/(\d+) states, stored/.exec(output)?.[1] ?? NaN);
  return { errors, states, output, dir };
}

function trail(r: PanResult, model: string, defines: string[] = []): string {
  return execFileSync('spin', [...defines.map((d) => `-D${d}`), '-t', model], { cwd: r.dir, encoding: 'utf8' });
}

test('the legacy (GlusterFS) protocol yields the stale read of gluster#963', () => {
  const r = check('legacy.pml', [], true);
  assert.equal(r.errors, 1, r.output);
  assert.match(r.output, /assertion violated \(v==1\)/);
  const t = trail(r, 'legacy.pml');
  const story = t
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => /^(migrator|app1|app2)/.test(l));
  console.log(`legacy counterexample (shortest, ${r.states} states explored):\n  ` + story.join('\n  '));
  assert.ok(story.includes('migrator: dst-data'), 'the race needs dst to become data');
  assert.ok(!story.includes('migrator: src-linkto'), 'and happens before src becomes a linkto');
  assert.match(story.join('\n'), /app1 reads 0/);
});

test('the safe protocol passes an exhaustive check with crashes, restarts and lease expiry', () => {
  const r = check('safe.pml');
  assert.equal(r.errors, 0, r.output);
  assert.ok(r.states > 10_000, `explored ${r.states} states`);
  console.log(`safe protocol: ${r.states} states, 0 errors (crash at every step, up to 3 runs, lease expiry)`);
});

for (const m of [
  'MUT_NO_FREEZE_HOLD',
  'MUT_NO_DIRTY_TRACKING',
  'MUT_NO_FENCING',
  'MUT_READ_IGNORES_MOVED',
  'MUT_INSTALL_BEFORE_COMMIT',
  'MUT_TRACK_AT_ENTER',
  'MUT_FREEZE_NO_WAIT',
  'MUT_LOCAL_READ_NO_CHECK',
  'MUT_LEASE_IGNORES_WRITERS',
  'MUT_LOCAL_WRITE_NO_CHECK',
]) {
  test(`the check catches a planted bug: ${m}`, () => {
    const r = check('safe.pml', [m], true);
    assert.ok(r.errors >= 1, `${m} was not caught:\n${r.output}`);
  });
}

function labels(model: string): string[] {
  const src = fs.readFileSync(path.join(MODELS, model), 'utf8');
  return [...src.matchAll(/^step_([a-z0-9_]+):/gm)].map((m) => m[1].replace(/_/g, '-'));
}

test('model steps and code steps carry the same names, in the same order', () => {
  assert.deepEqual(labels('safe.pml'), [...SAFE_STEPS]);
  assert.deepEqual(labels('legacy.pml'), [...LEGACY_STEPS]);
});
