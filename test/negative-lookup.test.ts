/**
 * Negative lookups answered by the client (brick/watch.ts, dht/neg-cache.ts): the bricks' watches of a
 * directory a client made, their events and acknowledgements, and the client's cache on real bricks.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { Volume } from '../src/api/volume.js';
import { ACK_WAIT_MS, DirWatches, MAX_WATCHES_PER_CONNECTION, type Watcher } from '../src/brick/watch.js';
import type { Clock, Timer } from '../src/common/env.js';
import { startCluster } from './helpers/cluster.js';
import { namesOn } from './helpers/disk.js';

/** A clock whose timers fire only when the test moves it. */
class ManualClock implements Clock {
  private t = 0;
  private timers: { at: number; fn: () => void; live: boolean }[] = [];
  now(): number {
    return this.t;
  }
  wallNow(): number {
    return this.t;
  }
  setTimer(ms: number, fn: () => void): Timer {
    const e = { at: this.t + ms, fn, live: true };
    this.timers.push(e);
    return { cancel: () => void (e.live = false) };
  }
  sleep(ms: number): Promise<void> {
    return new Promise((r) => this.setTimer(ms, r));
  }
  advance(ms: number): void {
    this.t += ms;
    for (const e of this.timers.filter((x) => x.live && x.at <= this.t)) {
      e.live = false;
      e.fn();
    }
  }
}

type Told = { path: string; subtree: boolean; id: number };
function watcher(): Watcher & { told: Told[] } {
  const told: Told[] = [];
  return { told, watching: new Set(), notify: (kind, p) => void (kind === 'dirChanged' && told.push(p as Told)) };
}
const settled = async (p: unknown) => {
  let done = false;
  void Promise.resolve(p).then(
    () => (done = true),
    () => (done = true),
  );
  for (let i = 0; i < 5; i++) await Promise.resolve();
  return done;
};

test('a brick tells each watcher of a directory once, not the connection that made the change, and the change waits for the acknowledgement', async () => {
  const clock = new ManualClock();
  const w = new DirWatches(clock);
  const a = watcher();
  const b = watcher();
  w.add(a, 'd');
  w.add(b, 'd');
  // b makes a name in d: a is told, b is not; b's reply waits for a's acknowledgement.
  const r = w.run(b, () => {
    w.changedIn('d');
    return 'made';
  });
  assert.equal(b.told.length, 0);
  assert.deepEqual(
    a.told.map((t) => [t.path, t.subtree]),
    [['/d', false]],
  );
  assert.ok(r instanceof Promise);
  assert.equal(await settled(r), false);
  w.ack(a.told[0].id);
  assert.equal(await r, 'made');
  // a's watch is gone: a second change tells a nothing, and waits for nobody.
  assert.equal(
    w.run(b, () => (w.changedIn('d'), 'again')),
    'again',
  );
  assert.equal(a.told.length, 1);
  // b still watches d; a change from a tells b.
  w.run(a, () => w.changedIn('d'));
  assert.equal(b.told.length, 1);
  // A watcher that never answers holds a change up for ACK_WAIT_MS, no longer.
  const c = watcher();
  w.add(c, 'e');
  const late = w.run(a, () => {
    w.changedIn('e');
    throw Object.assign(new Error('failed after the change'), { code: 'EIO' });
  });
  clock.advance(ACK_WAIT_MS - 1);
  assert.equal(await settled(late), false);
  clock.advance(1);
  await assert.rejects(Promise.resolve(late), { code: 'EIO' });
  // A request that waits before its change (a migration settling) resumes as the same request.
  w.add(a, 'g');
  const resumed = w.run(b, () => Promise.resolve().then(w.resumed(() => (w.changedIn('g'), 'later'))));
  assert.equal(await settled(resumed), false);
  assert.equal(a.told.at(-1)!.path, '/g');
  w.ack(a.told.at(-1)!.id);
  assert.equal(await resumed, 'later');
  // Outside any request, everyone is told, and nothing waits.
  w.add(b, 'f');
  w.changedIn('f');
  assert.equal(b.told.at(-1)!.path, '/f');
});

test('renaming or removing a directory tells the watchers of it and of every directory below, the origin too; a closed connection is forgotten', () => {
  const w = new DirWatches(new ManualClock());
  const a = watcher();
  const b = watcher();
  for (const d of ['a', 'a/b', 'a/b/c', 'ab']) w.add(a, d);
  w.add(b, 'a/b');
  w.run(a, () => w.gone('a'));
  assert.deepEqual(
    a.told.map((t) => [t.path, t.subtree]),
    [['/a', true]],
  );
  assert.deepEqual(
    b.told.map((t) => [t.path, t.subtree]),
    [['/a', true]],
  );
  assert.deepEqual([...a.watching], ['ab']);
  assert.equal(b.watching.size, 0);
  w.drop(a);
  w.run(b, () => w.changedIn('ab'));
  assert.equal(a.told.length, 1);
  // A connection at its limit gives up its oldest watch, and is told.
  const c = watcher();
  for (let i = 0; i <= MAX_WATCHES_PER_CONNECTION; i++) w.add(c, `x${i}`);
  assert.equal(c.watching.size, MAX_WATCHES_PER_CONNECTION);
  assert.deepEqual(
    c.told.map((t) => t.path),
    ['/x0'],
  );
});

test('a client answers lookups in a directory it made without a brick, and sees at once what another client makes there', async () => {
  const c = await startCluster(3);
  const a = await Volume.connect(c.spec);
  const b = await Volume.connect(c.spec);
  // Every lookup a's client sends to a brick.
  const lookups: string[] = [];
  for (const n of a.client.names) {
    const sv = a.client.sv(n);
    const call = sv.call.bind(sv);
    sv.call = ((op: string, args?: Record<string, unknown>, ...rest: unknown[]) => {
      if (op === 'lookup') lookups.push(String(args?.path));
      return (call as (...x: unknown[]) => Promise<unknown>)(op, args, ...rest);
    }) as typeof sv.call;
  }
  const enoent = { code: 'ENOENT' };
  try {
    await a.mkdir('/d');
    lookups.length = 0; // (the root's, for the mkdir)
    for (let i = 0; i < 20; i++) await assert.rejects(a.stat(`/d/none${i}`), enoent);
    assert.equal(lookups.join(' '), '', 'no brick asked about names that cannot be there');
    // Names a makes itself are looked up as ever.
    await a.writeFile('/d/mine', 'a');
    await a.symlink('mine', '/d/link');
    await a.mkdir('/d/sub');
    assert.equal((await a.stat('/d/mine')).size, 1);
    assert.ok((await a.lstat('/d/link')).isSymbolicLink());
    assert.ok((await a.stat('/d/sub')).isDirectory());
    await assert.rejects(a.stat('/d/sub/none'), enoent);
    await a.rename('/d/mine', '/d/renamed');
    assert.equal(await a.readFile('/d/renamed', 'utf8'), 'a');
    await assert.rejects(a.stat('/d/none'), enoent);
    const asked = lookups.length;
    assert.ok(asked > 0);
    assert.ok(!lookups.includes('/d/none') && !lookups.includes('/d/sub/none'));
    // b makes a name in d: once its create has returned, a finds it.
    await b.writeFile('/d/theirs', 'from b');
    assert.equal(await a.readFile('/d/theirs', 'utf8'), 'from b');
    // a's cache of d is gone: it asks again about any name there.
    await assert.rejects(a.stat('/d/none'), enoent);
    assert.ok(lookups.includes('/d/none'));
    // A directory renamed by another client: the cache of its old name (and below) goes.
    await a.mkdir('/e');
    await a.mkdir('/e/f');
    await b.rename('/e', '/e-old');
    await b.mkdir('/e');
    await b.mkdir('/e/f');
    await b.writeFile('/e/f/x', 'x');
    await b.writeFile('/e/y', 'y');
    assert.equal(await a.readFile('/e/f/x', 'utf8'), 'x');
    assert.equal(await a.readFile('/e/y', 'utf8'), 'y');
    // Removed and made again by another client, with a link and a rename into it.
    await a.mkdir('/g');
    await b.rmdir('/g');
    await b.mkdir('/g');
    await b.link('/d/theirs', '/g/hard');
    await b.rename('/d/theirs', '/g/moved');
    assert.equal(await a.readFile('/g/hard', 'utf8'), 'from b');
    assert.equal(await a.readFile('/g/moved', 'utf8'), 'from b');
    // A new layout for the directory (a fix-layout after add-brick) voids the cache: names may go to
    // a brick that does not watch it.
    await a.mkdir('/h');
    const before = lookups.length;
    await assert.rejects(a.stat('/h/q'), enoent);
    assert.equal(lookups.length, before);
    const n0 = b.client.names[0];
    const own = (await b.client.sv(n0).call('lookup', { path: '/h' })).layout;
    await b.client.sv(n0).call('setLayout', { path: '/h', layout: own ?? null });
    await assert.rejects(a.stat('/h/q'), enoent);
    assert.ok(lookups.length > before);
    // A client that has heard nothing from some brick for a second asks again.
    await a.mkdir('/k');
    await new Promise((r) => setTimeout(r, 1100));
    const quiet = lookups.length;
    await assert.rejects(a.stat('/k/q'), enoent);
    assert.ok(lookups.length > quiet);
    // A brick that restarts forgets its watches: the client drops every cache with the connection (no
    // event would come for a name made there afterwards).
    await a.mkdir('/m');
    await assert.rejects(a.stat('/m/q'), enoent);
    const [after] = namesOn(c.dirs, a.client.names, '/m', 0, 1, 'after');
    await c.kill(0);
    await c.restart(0);
    await b.writeFile(`/m/${after}`, 'after');
    assert.equal(await a.readFile(`/m/${after}`, 'utf8'), 'after');
  } finally {
    await a.close();
    await b.close();
    await c.stop();
  }
});
