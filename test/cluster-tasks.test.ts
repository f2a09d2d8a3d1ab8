/**
 * The node daemons' takeover of long tasks (src/cluster/tasks.ts) on the local store, with a fake task
 * run: a task whose claim is held is left to its holder; once the claim is gone while the checkpoint says
 * running, exactly one of two watchers takes it (its claim names it) and runs it; a task that completed,
 * was stopped, or whose volume is not started is not taken; a run that throws is not retried at once; a
 * watcher closed to hand on (SIGTERM) ends its run and the other takes it over at once.
 * Over a real etcd (no root needed): a task whose runner died shows as awaiting a takeover (not failed),
 * `stop` stops it there, and `volume delete` forgets the task.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { LocalStore } from '../src/cluster/local-store.js';
import type { Claim, Store } from '../src/cluster/store.js';
import { TaskWatcher, TASK_DEFAULTS, type TaskRecord, type TaskRun } from '../src/cluster/tasks.js';
import { keys, type VolumeRecord } from '../src/cluster/records.js';
import { realClock } from '../src/common/real-env.js';
import { EtcdStore } from '../src/cluster/etcd-store.js';
import { clusterRebalanceStatus, clusterRebalanceStop } from '../src/cli/cluster-tasks.js';
import { clusterDelete } from '../src/cli/cluster.js';
import { formatStatus } from '../src/cli/rebalance.js';
import { etcdAvailable, startEtcd } from './helpers/etcd.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('task takeover: one watcher of two takes a running task whose claim is gone, and only then', { timeout: 60_000 }, async () => {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'dhtfs-tasks-'));
  const store = new LocalStore(path.join(base, 'store.json'));
  const vol = (name: string, state: VolumeRecord['state']): VolumeRecord => ({ name, volumeId: randomUUID(), secret: 's', adminSecret: 'a', state, bricks: [], decommissioned: [], version: 1 });
  const task: TaskRecord = { kind: 'remove-brick', mode: 'full', force: true, throttle: 'normal', bricks: ['tv-client-1'] };
  const put = (key: string, value: unknown) => store.commit([{ key, value: JSON.stringify(value) }]);
  const runs: { by: string; vol: string; task: TaskRecord; owner: string | null; handedOn: boolean }[] = [];
  let finish = (): void => {};
  const run =
    (by: string): TaskRun =>
    async (v, t, _claim, { handedOn, handOn }) => {
      runs.push({ by, vol: v, task: t, owner: (await store.get(keys.task(v)))?.value ?? null, handedOn });
      if (v === 'bad') throw new Error('the volume does not answer');
      if (v === 'ho' && !handedOn) {
        // Runs until its daemon stops, then ends at a "file boundary" with its checkpoint still running.
        for (let i = 0; i < 500 && !handOn(); i++) await sleep(20);
        return 'running';
      }
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
    assert.ok(
      logs.some((l) => /the remove-brick of volume bad taken over here failed: the volume does not answer; trying again in 60 s/.test(l)),
      logs.join('\n'),
    );

    // A daemon stopping on purpose (SIGTERM) hands its run on: it ends the run, marks it handed on and
    // releases the claim, and the other daemon takes it over at once (no lapse, no lease wait).
    await put(`tasks/ho/task`, task);
    await put(keys.volume('ho'), vol('ho', 'started'));
    await put(keys.checkpoint('ho'), { state: 'running' });
    for (let i = 0; i < 100 && !runs.some((x) => x.vol === 'ho'); i++) await sleep(50);
    const first = runs.find((x) => x.vol === 'ho');
    assert.ok(first && !first.handedOn, `one watcher took the task: ${JSON.stringify(runs)}`);
    const stopping = watchers.find((w) => w.tasks().includes('ho'))!;
    const other = watchers.find((w) => w !== stopping)!;
    await stopping.close({ handOn: true });
    assert.deepEqual(stopping.tasks(), [], 'the stopping watcher ended its run');
    for (let i = 0; i < 100 && !runs.some((x) => x.vol === 'ho' && x.by !== first.by); i++) await sleep(50);
    const second = runs.find((x) => x.vol === 'ho' && x.by !== first.by);
    assert.ok(second?.handedOn, `the other watcher took it over as handed on: ${JSON.stringify(runs)}\n${logs.join('\n')}`);
    assert.deepEqual(other.tasks(), ['ho']);
    assert.ok(logs.some((l) => l.startsWith(`${first.by} info: handed the remove-brick of volume ho on (this daemon is stopping)`)));
    assert.ok(logs.some((l) => l.startsWith(`${second.by} info: taking over the remove-brick of volume ho (handed on by ${first.by}): on from its checkpoint at once`)));
    assert.equal(await store.get(keys.handedOn('ho')), null, 'the taker cleared the mark');
    finish();
  } finally {
    for (const w of watchers) await w.close();
    await store.close();
    fs.rmSync(base, { recursive: true, force: true });
  }
});

const etcdHere = etcdAvailable();

test('a daemon stopping whose claim was lost meanwhile does not mark the task handed on: the runner that took it over since would be told so wrongly', { timeout: 60_000 }, async () => {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'dhtfs-tasks-lost-'));
  const store = new LocalStore(path.join(base, 'store.json'));
  // The store's claims, with a way to lose one (its lease expired: the store away for a TTL).
  const lose = new Map<string, () => void>();
  const claimStore: Store = Object.assign(Object.create(store) as Store, {
    claim: async (key: string, value: string, ttl: number): Promise<Claim | null> => {
      const c = await store.claim(key, value, ttl);
      if (!c) return null;
      let lost!: () => void;
      const p = new Promise<void>((r) => (lost = r));
      lose.set(key, lost);
      return { key: c.key, lost: Promise.race([c.lost, p]), release: () => c.release() };
    },
  });
  const logs: string[] = [];
  let started = false;
  const run: TaskRun = async (_v, _t, _c, { handOn }) => {
    started = true;
    for (let i = 0; i < 500 && !handOn(); i++) await sleep(20);
    return 'running';
  };
  const w = new TaskWatcher(claimStore, { host: 'h', pid: 1, node: 'n1' }, run, realClock, (l, m) => logs.push(`${l}: ${m}`), { ...TASK_DEFAULTS, pollMs: 100 });
  try {
    const rec: VolumeRecord = { name: 'lv', volumeId: randomUUID(), secret: 's', adminSecret: 'a', state: 'started', bricks: [], decommissioned: [], version: 1 };
    await store.commit([
      { key: keys.volume('lv'), value: JSON.stringify(rec) },
      { key: 'tasks/lv/task', value: JSON.stringify({ kind: 'rebalance', mode: 'full', force: false, throttle: 'normal' }) },
      { key: keys.checkpoint('lv'), value: JSON.stringify({ state: 'running' }) },
    ]);
    await w.start();
    for (let i = 0; i < 100 && !started; i++) await sleep(50);
    assert.ok(started, 'the watcher took the task');
    // Its claim lapses, and another daemon takes the task over (its claim names it).
    lose.get(keys.task('lv'))!();
    await store.commit([{ key: keys.task('lv'), value: null }]);
    assert.ok(await store.claim(keys.task('lv'), JSON.stringify({ host: 'h2', pid: 2, node: 'n2' }), 10));
    await w.close({ handOn: true });
    assert.equal(await store.get(keys.handedOn('lv')), null, `not marked handed on: ${logs.join('\n')}`);
    assert.match((await store.get(keys.task('lv')))!.value, /"n2"/, "the other daemon's claim stays");
  } finally {
    await w.close();
    await store.close();
    fs.rmSync(base, { recursive: true, force: true });
  }
});

test('a task whose runner died, over a real etcd: status says it awaits a takeover, stop stops it there, delete forgets it', { skip: etcdHere.ok ? false : etcdHere.reason, timeout: 60_000 }, async () => {
  const e = await startEtcd();
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'dhtfs-tasks-home-'));
  const before = process.env.DHTFS_HOME;
  process.env.DHTFS_HOME = home;
  fs.writeFileSync(path.join(home, 'cluster.json'), JSON.stringify({ etcd: [e.endpoint], etcdTls: e.tlsDir }));
  const store = new EtcdStore([e.endpoint], { tls: e.tls });
  try {
    const v: VolumeRecord = { name: 'dv', volumeId: randomUUID(), secret: 's', adminSecret: 'a', state: 'stopped', bricks: [], decommissioned: [], version: 1 };
    const cp = {
      runId: 'r',
      mode: 'full',
      force: true,
      position: '/',
      counters: { scanned: 3, migrated: 1, skipped: 0, failed: 0, bytes: 10, dirs: 1, totalFiles: 4, totalBytes: 40 },
      commitHash: 1,
      startedAt: Date.now() - 1000,
      elapsedMs: 1000,
      state: 'running',
      topologyVersion: 1,
    };
    const task: TaskRecord = { kind: 'remove-brick', mode: 'full', force: true, throttle: 'normal', bricks: ['dv-client-1'] };
    assert.ok(
      await store.commit([
        { key: keys.volume('dv'), value: JSON.stringify(v) },
        { key: keys.checkpoint('dv'), value: JSON.stringify(cp) },
        { key: 'tasks/dv/task', value: JSON.stringify(task) },
      ]),
    );

    // No runner holds it, its checkpoint says running: not failed, awaiting a taker.
    const st = await clusterRebalanceStatus('dv');
    assert.equal(st?.state, 'running');
    assert.equal(st?.awaitingTakeover, true);
    assert.match(formatStatus(st!, false), /its runner died: a node daemon takes the run over/);
    // Held by a runner: that runner is named, and delete is refused.
    const claim = await store.claim(keys.task('dv'), JSON.stringify({ host: 'h2', pid: 42, node: 'n2' }), 5);
    const held = await clusterRebalanceStatus('dv');
    assert.equal(held?.awaitingTakeover, undefined);
    assert.deepEqual(held?.runner, { host: 'h2', pid: 42, node: 'n2' });
    await assert.rejects(clusterDelete('dv'), /a rebalance of dv is running; stop it first/);
    await claim!.release();

    // stop with no runner: stopped at once (and the request kept for a taker).
    assert.equal(await clusterRebalanceStop('dv'), null);
    assert.equal((await clusterRebalanceStatus('dv'))?.state, 'stopped');
    assert.ok(await store.get('tasks/dv/stop'));
    await assert.rejects(clusterRebalanceStop('dv'), /no rebalance of dv is running/);

    // delete forgets the task too: a volume made again under the name has no run to take over.
    await clusterDelete('dv');
    assert.deepEqual(await store.list('tasks/dv/'), []);
  } finally {
    if (before === undefined) delete process.env.DHTFS_HOME;
    else process.env.DHTFS_HOME = before;
    await store.close();
    await e.stop();
    fs.rmSync(home, { recursive: true, force: true });
  }
});
