/**
 * The DHT client's caches as layers: the negative-lookup cache (src/dht/neg-cache.ts) and the directory
 * and layout cache (src/dht/dir-cache.ts) alone, without bricks or a client; and a volume with both off.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { NegativeCache } from '../src/dht/neg-cache.js';
import { DirCache, DIR_HINT_MS, type DirInfo } from '../src/dht/dir-cache.js';
import { Volume } from '../src/api/volume.js';
import * as xattr from '@napi-rs/xattr';
import { startCluster } from './helpers/cluster.js';
import { P, namesOn } from './helpers/disk.js';

test('a directory made everywhere answers for the names not made in it, and only while every brick is fresh', () => {
  let fresh = true;
  const c = new NegativeCache(() => fresh);
  const t = c.begin('/d');
  assert.equal(c.knownAbsent('/d', 'x'), false, 'not of use before every brick made it');
  c.made('/d', t, true);
  assert.equal(c.knownAbsent('/d', 'x'), true);
  c.mayExist('/d', 'x');
  assert.equal(c.knownAbsent('/d', 'x'), false, 'a name this client makes is asked for');
  assert.equal(c.knownAbsent('/d', 'y'), true);
  fresh = false;
  assert.equal(c.knownAbsent('/d', 'y'), false, 'a silent brick may have missed news');
});

test('a directory made on some bricks only, or whose mkdir failed, is not cached', () => {
  const c = new NegativeCache(() => true);
  c.made('/a', c.begin('/a'), false);
  const t = c.begin('/b');
  c.failed('/b', t);
  assert.equal(c.knownAbsent('/a', 'x'), false);
  assert.equal(c.knownAbsent('/b', 'x'), false);
  assert.equal(c.size, 0);
});

test('events drop a directory, a subtree, or everything', () => {
  const c = new NegativeCache(() => true);
  for (const p of ['/a', '/a/b', '/a/b/c', '/ab', '/z']) c.made(p, c.begin(p), true);
  c.gone('/a');
  assert.deepEqual(
    ['/a', '/a/b', '/a/b/c', '/ab', '/z'].filter((p) => c.knownAbsent(p, 'n')),
    ['/ab', '/z'],
  );
  c.changed('/ab');
  assert.equal(c.knownAbsent('/ab', 'n'), false);
  c.clear();
  assert.equal(c.size, 0);
});

test('a directory with more names made than the cap is dropped; a stale token changes nothing', () => {
  const c = new NegativeCache(() => true, true, 2);
  const t = c.begin('/d');
  c.made('/d', t, true);
  c.mayExist('/d', 'a');
  c.mayExist('/d', 'b');
  assert.equal(c.knownAbsent('/d', 'z'), true);
  c.mayExist('/d', 'c');
  assert.equal(c.knownAbsent('/d', 'z'), false);
  const t2 = c.begin('/e');
  c.begin('/e'); // made again meanwhile (another mkdir of the same path)
  c.made('/e', t2, true);
  assert.equal(c.knownAbsent('/e', 'z'), false, "the first mkdir's answer is not the second's");
});

test('switched off, it knows nothing', () => {
  const c = new NegativeCache(() => true, false);
  const t = c.begin('/d');
  assert.equal(t, null);
  c.made('/d', t, true);
  assert.equal(c.knownAbsent('/d', 'x'), false);
});

test('the directory cache keeps layouts until dropped, a tree at once, and hints for a while', () => {
  let now = 0;
  const clock = { now: () => now, wallNow: () => now, setTimer: () => ({ cancel: () => {} }), sleep: async () => {} };
  const c = new DirCache(clock);
  const info = (path: string) => ({ path, gfid: 'g', layout: [], attr: {} }) as unknown as DirInfo;
  for (const p of ['/a', '/a/b', '/ab']) c.set(p, info(p));
  assert.equal(c.get('/a/b')?.path, '/a/b');
  c.dropTree('/a');
  assert.deepEqual(
    ['/a', '/a/b', '/ab'].filter((p) => c.get(p)),
    ['/ab'],
  );
  assert.equal(c.hinted('/ab'), true, 'a known layout is a directory');
  c.hint('/x');
  assert.equal(c.hinted('/x'), true);
  now += DIR_HINT_MS + 1;
  assert.equal(c.hinted('/x'), false);
  const off = new DirCache(clock, false);
  off.set('/a', info('/a'));
  assert.equal(off.get('/a'), undefined, 'switched off, it keeps nothing');
});

test('a volume with both caches off makes, finds, renames and lists names as one with them', async () => {
  const c = await startCluster(3);
  try {
    for (const opts of [{}, { negativeCache: false, dirCache: false }]) {
      const v = await Volume.connect(c.spec, opts);
      const d = `/d${Object.keys(opts).length}`;
      await v.mkdir(d);
      await assert.rejects(v.stat(`${d}/nothing`), { code: 'ENOENT' });
      for (let i = 0; i < 20; i++) await v.writeFile(`${d}/f${i}`, `x${i}`);
      await v.rename(`${d}/f0`, `${d}/g0`);
      assert.equal(await v.readFile(`${d}/g0`, 'utf8'), 'x0');
      await assert.rejects(v.stat(`${d}/f0`), { code: 'ENOENT' });
      assert.equal((await v.readdir(d)).length, 20);
      await v.close();
    }
  } finally {
    await c.stop();
  }
});

test("the root's ranges read while a fix-layout rewrote them (a hole) are not cached: once whole again, every name works", async () => {
  const c = await startCluster(2);
  const vol = await Volume.connect(c.spec);
  try {
    const names = c.spec.bricks.map((b) => b.name);
    const onB0 = namesOn(c.dirs, names, '/', 0, 1, 'a')[0];
    const onB1 = namesOn(c.dirs, names, '/', 1, 1, 'b')[0];
    // Brick 1's ranges of / gone for a moment, as between a fix-layout's writes to the two bricks.
    const b1Root = c.dirs[1];
    const saved = xattr.getAttributeSync(b1Root, P + 'glusterfs.dht')!;
    xattr.removeAttributeSync(b1Root, P + 'glusterfs.dht');
    vol.client.dirs.drop('/');
    await vol.writeFile(`/${onB0}`, 'a name outside the hole');
    xattr.setAttributeSync(b1Root, P + 'glusterfs.dht', saved);
    await vol.writeFile(`/${onB1}`, 'a name where the hole was');
    assert.equal(await vol.readFile(`/${onB1}`, 'utf8'), 'a name where the hole was');
  } finally {
    await vol.close();
    await c.stop();
  }
});
