/**
 * The node daemons' takeover of long tasks (src/cluster/tasks.ts) on the local store, with a fake task
 * run: a task whose claim is held is left to its holder; once the claim is gone while the checkpoint says
 * running, exactly one of two watchers takes it (its claim names it) and runs it; a task that completed,
 * was stopped, or whose volume is not started is not taken; a run that throws is not retried at once.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { LocalStore } from '../src/cluster/local-store.js';
import { TaskWatcher, TASK_DEFAULTS, type TaskRecord, type TaskRun } from '../src/cluster/tasks.js';
import { keys, type VolumeRecord } from '../src/cluster/records.js';
import { realClock } from '../src/common/real-env.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('task takeover: one watcher of two takes a running task whose claim is gone, and only then', { timeout: 60_000 }, async () => {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'dhtfs-tasks-'));
  const store = new LocalStore(path.join(base, 'store.json'));
  const vol = (name: string, state: VolumeRecord['state']): VolumeRecord => ({ name, volumeId: randomUUID(), secret: 's', adminSecret: 'a', state, bricks: [], decommissioned: [], version: 1 });
  const task: TaskRecord = { kind: 'remove-brick', mode: 'full', force: true, throttle: 'normal', bricks: ['tv-client-1'] };
  const put = (key: string, value: unknown) => store.commit([{ key, value: JSON.stringify(value) }]);
  const runs: { by: string; vol: string; task: TaskRecord; owner: string | null }[] = [];
  let finish = (): void => {};
  const run =
    (by: string): TaskRun =>
    async (v, t) => {
      runs.push({ by, vol: v, task: t, owner: (await store.get(keys.task(v)))?.value ?? null });
      if (v === 'bad') throw new Error('the volume does not answer');
      await new Promise<void>((r) => (finish = r));
      await put(keys.checkpoint(v), { state: 'completed' });
      return 'completed';
    };
  const logs: string[] = [];
  const opts = { ...TASK_DEFAULTS, pollMs: 100, retryMs: 60_000 };
  const watchers = ['n1', 'n2'].map((n) => new TaskWatcher(store, { host: 'h', pid: 1, node: n }, run(n), realClock, (l, m) => logs.push(`${n} ${l}: ${m}`), opts));
  try {
    await put(keys.volume('tv'), vol('tv', 'started'));
    await put(keys.volume('off'), vol('off', 'stopped'));
    await put(keys.volume('bad'), vol('bad', 'started'));
    await put(keys.volume('done'), vol('done', 'started'));
    await put(`tasks/tv/task`, task);
    await put(keys.checkpoint('tv'), { state: 'running' });
    const held = await store.claim(keys.task('tv'), JSON.stringify({ host: 'h0', pid: process.pid }), 10);
    assert.ok(held);
    // Not taken: a stopped volume's, a completed one's, a stopped one's.
    await put(`tasks/off/task`, task);
    await put(keys.checkpoint('off'), { state: 'running' });
    await put(`tasks/done/task`, task);
    await put(keys.checkpoint('done'), { state: 'completed' });
    await put(`tasks/stopped/task`, task);
    await put(keys.checkpoint('stopped'), { state: 'stopped' });
    for (const w of watchers) await w.start();
    await sleep(500);
    assert.equal(runs.length, 0, `a held claim and finished tasks are left alone: ${JSON.stringify(runs)}`);

    await held!.release();
    for (let i = 0; i < 100 && runs.length === 0; i++) await sleep(50);
    await sleep(500);
    assert.equal(runs.length, 1, `exactly one watcher took it: ${JSON.stringify(runs)}`);
    const [r] = runs;
    assert.equal(r.vol, 'tv');
    assert.deepEqual(r.task, task);
    assert.equal((JSON.parse(r.owner!) as { node: string }).node, r.by, 'the claim names the taker');
    assert.deepEqual(watchers.find((w) => w.tasks().length > 0)?.tasks(), ['tv']);
    finish();
    for (let i = 0; i < 100 && (await store.get(keys.task('tv'))); i++) await sleep(50);
    assert.equal(await store.get(keys.task('tv')), null, 'the claim is released when the run ends');
    await sleep(500);
    assert.equal(runs.length, 1, 'a completed task is not taken again');

    // A run that throws: the claim goes, and that watcher does not try the volume again at once (the other may, once).
    await put(`tasks/bad/task`, task);
    await put(keys.checkpoint('bad'), { state: 'running' });
    for (let i = 0; i < 100 && runs.length < 2; i++) await sleep(50);
    await sleep(1000);
    const bad = runs.filter((x) => x.vol === 'bad');
    assert.ok(bad.length >= 1 && bad.length <= 2 && new Set(bad.map((x) => x.by)).size === bad.length, `each watcher tried it at most once: ${JSON.stringify(bad)}`);
    assert.ok(logs.some((l) => /the remove-brick of volume bad taken over here failed: the volume does not answer; trying again in 60 s/.test(l)), logs.join('\n'));
  } finally {
    for (const w of watchers) await w.close();
    await store.close();
    fs.rmSync(base, { recursive: true, force: true });
  }
});
