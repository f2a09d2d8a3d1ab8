/**
 * Rebalance progress that means something (issue 20, item 6): a first pass estimates what the run will
 * move (names and bytes), which must be what it then moves; the ETA from it is near the truth once a
 * tenth is done (checked loosely: the machine is shared); a run that dies at start shows as failed, with
 * its reason, in `status` and `status --json`, not as the previous run's "completed". Real bricks.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { Volume } from '../src/api/volume.js';
import { Rebalancer, type Checkpoint } from '../src/rebalance/rebalancer.js';
import { etaOf, progressOf } from '../src/cli/rebalance.js';
import { freePort, MAIN_JS } from '../src/cli/state.js';
import { startCluster } from './helpers/cluster.js';

const run = promisify(execFile);

test('the first pass estimates exactly what the run moves; the ETA after a tenth is near the truth', { timeout: 300_000 }, async () => {
  const c = await startCluster(3);
  try {
    const vol = await Volume.connect(c.spec);
    await vol.mkdir('/a/b', { recursive: true });
    const dirs = ['', '/a', '/a/b'];
    for (let i = 0; i < 900; i++) await vol.writeFile(`${dirs[i % 3]}/f${i}`, Buffer.alloc(i % 12 === 0 ? 256 * 1024 : 3000 + i, i & 0xff));
    await vol.symlink('somewhere', '/a/link');
    await c.addBrick();
    await c.pushTopology();
    // The files just written go to disk first: their write-out would slow the run's first fsyncs only.
    execFileSync('sync');
    const rb = await Volume.connect(c.spec);
    let cp: Checkpoint | null = null;
    const seen: { cp: Checkpoint; at: number }[] = [];
    const t0 = performance.now();
    const store = { load: () => cp, save: (x: Checkpoint) => void (cp = structuredClone(x)) };
    const r = await new Rebalancer(rb.client, { store, throttle: 1, onProgress: (x) => seen.push({ cp: structuredClone(x), at: performance.now() - t0 }) }).run();
    const total = performance.now() - t0;
    assert.equal(r.state, 'completed', r.error);
    assert.equal(r.counters.failed + r.counters.skipped, 0);
    assert.ok(r.counters.migrated > 40, `moved ${r.counters.migrated}`);
    // Nothing changed meanwhile: the estimate is the truth (names, and bytes: no holes, no rewrites).
    assert.equal(r.counters.totalFiles, r.counters.migrated, 'names estimated = names moved');
    assert.equal(r.counters.totalBytes, r.counters.bytes, 'bytes estimated = bytes copied');
    assert.ok(
      seen.some((s) => s.cp.estimating),
      'the first pass shows as such',
    );
    // The ETA once a tenth is done, against the time the run really took from there.
    if (process.env.SHOW_PROGRESS) for (const s of seen) console.log(`# ${s.at.toFixed(0)} ms ${s.cp.position} ${((progressOf(s.cp) ?? 0) * 100).toFixed(1)}% migrated ${s.cp.counters.migrated}`);
    const at = seen.find((s) => (progressOf(s.cp) ?? 0) >= 0.1);
    assert.ok(at, 'progress was reported');
    const eta = etaOf(at.cp, at.at)!;
    const truth = (total - at.at) / 1000;
    const ratio = eta / truth;
    console.log(`# ETA at ${(progressOf(at.cp)! * 100).toFixed(0)}%: ${eta.toFixed(2)} s; the run took ${truth.toFixed(2)} s more (ratio ${ratio.toFixed(2)}); run ${(total / 1000).toFixed(1)} s, first pass ${r.estimateMs} ms`);
    // 2x is the aim; 3x the bound here, on a shared 2-core machine.
    assert.ok(ratio > 1 / 3 && ratio < 3, `ETA ${eta.toFixed(2)} s against ${truth.toFixed(2)} s`);
    await vol.close();
    await rb.close();
  } finally {
    await c.stop();
  }
});

test('a rebalance that dies at start shows as failed with its reason, not as the last run completed', { timeout: 300_000 }, async () => {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'dhtfs-prog-'));
  const env = { ...process.env, DHTFS_HOME: home };
  const cli = async (...args: string[]) => (await run(process.execPath, [MAIN_JS, ...args], { env })).stdout;
  const brick = async (i: number) => `127.0.0.1:${await freePort()}:${path.join(home, `b${i}`)}`;
  const waitDone = async () => {
    for (let i = 0; i < 600; i++) {
      const s = JSON.parse(await cli('volume', 'rebalance', 'pv', 'status', '--json'));
      if (s && s.state !== 'running') return s;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error('the rebalance did not end');
  };
  try {
    await cli('volume', 'create', 'pv', await brick(0), await brick(1));
    await cli('volume', 'start', 'pv');
    fs.writeFileSync(path.join(home, 'f'), 'x');
    for (let i = 0; i < 10; i++) await cli('-V', 'pv', 'put', path.join(home, 'f'), `/f${i}`);
    await cli('volume', 'rebalance', 'pv', 'start');
    assert.equal((await waitDone()).state, 'completed');
    // A brick dies; the next rebalance cannot run.
    const st = JSON.parse(await cli('volume', 'status', 'pv', '--json'));
    const pid = (st[0] ?? st).bricks.find((b: { brick: string }) => b.brick === 'pv-client-1').pid;
    process.kill(pid, 'SIGKILL');
    for (let i = 0; i < 100; i++) {
      try {
        process.kill(pid, 0);
        await new Promise((r) => setTimeout(r, 50));
      } catch {
        break;
      }
    }
    await cli('volume', 'rebalance', 'pv', 'start');
    const s = await waitDone();
    assert.equal(s.state, 'failed', `status --json: ${JSON.stringify(s)}`);
    assert.match(String(s.error), /ENOTCONN|connect|down|closed|refused/i);
    const text = await cli('volume', 'rebalance', 'pv', 'status');
    assert.match(text, /: failed/);
    assert.match(text, /error: /);
  } finally {
    await run(process.execPath, [MAIN_JS, 'volume', 'stop', 'pv'], { env }).catch(() => {});
    fs.rmSync(home, { recursive: true, force: true });
  }
});
