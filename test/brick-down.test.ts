/**
 * One brick down costs that brick's names, nothing more (issue 20, item 2): with one of three bricks
 * killed, listings show what the live bricks hold, files on live bricks read and write, creates whose
 * names hash to live bricks succeed, a new client connects, and names on the dead brick answer ENOTCONN
 * (never ENOENT). Through the library and through the mount; the brick comes back and all is whole.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Volume } from '../src/api/volume.js';
import { startCluster, type Cluster } from './helpers/cluster.js';
import { mountCluster, unmountCluster } from './helpers/mount.js';

const fuse = fs.existsSync('/dev/fuse') ? false : 'no /dev/fuse on this machine';

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (e) {
    return (e as { code?: string }).code ?? 'unknown';
  }
}

/** Which brick directory holds each name's data file. */
function brickOf(c: Cluster, rel: string): number {
  return c.dirs.findIndex((d) => {
    try {
      const st = fs.lstatSync(path.join(d, rel));
      return st.isFile() && (st.mode & 0o7777) !== 0o1000;
    } catch {
      return false;
    }
  });
}

test('a volume with one brick down: listings, reads, writes and creates on the live bricks go on', async () => {
  const c = await startCluster(3);
  const names = Array.from({ length: 30 }, (_, i) => `f${i}`);
  try {
    const vol = await Volume.connect(c.spec);
    await vol.mkdir('/d');
    for (const n of names) await vol.writeFile(`/d/${n}`, `data of ${n}`);
    const on = new Map(names.map((n) => [n, brickOf(c, `d/${n}`)]));
    const dead = 1;
    const live = names.filter((n) => on.get(n) !== dead);
    const lost = names.filter((n) => on.get(n) === dead);
    assert.ok(live.length > 0 && lost.length > 0, 'names on every brick');
    await c.kill(dead);
    const fresh = await Volume.connect(c.spec); // a client that connects while the brick is down
    try {
      for (const v of [vol, fresh]) {
        assert.deepEqual((await v.readdir('/d')).sort(), [...live].sort(), 'a listing shows what the live bricks hold');
        assert.deepEqual(await v.readdir('/'), ['d']);
        for (const n of live) assert.equal(await v.readFile(`/d/${n}`, 'utf8'), `data of ${n}`);
        for (const n of lost) assert.equal(await code(v.readFile(`/d/${n}`)), 'ENOTCONN', `${n} is out of reach, not missing`);
        for (const n of lost) assert.equal(await code(v.stat(`/d/${n}`)), 'ENOTCONN');
        assert.ok((await v.stat('/d')).isDirectory());
      }
      // Writes to a file on a live brick, and creates: those that hash to live bricks succeed.
      await fresh.appendFile(`/d/${live[0]}`, '+more');
      assert.equal(await vol.readFile(`/d/${live[0]}`, 'utf8'), `data of ${live[0]}+more`);
      let made = 0;
      let refused = 0;
      for (let i = 0; i < 30; i++) {
        const r = await code(fresh.writeFile(`/d/new${i}`, 'new'));
        if (r === 'ok') made++;
        else {
          assert.equal(r, 'ENOTCONN');
          refused++;
        }
      }
      assert.ok(made > 0 && refused > 0, `creates: ${made} made, ${refused} refused`);
      // Back again: every name is there, and those made meanwhile too.
      await c.restart(dead);
      let all: string[] = [];
      for (let t = 0; t < 50; t++) {
        all = await fresh.readdir('/d').catch(() => []);
        if (all.length === names.length + made) break;
        await new Promise((r) => setTimeout(r, 200));
      }
      assert.equal(all.length, names.length + made);
      for (const n of lost) assert.equal(await fresh.readFile(`/d/${n}`, 'utf8'), `data of ${n}`);
    } finally {
      await fresh.close();
      await vol.close();
    }
  } finally {
    await c.stop();
  }
});

test("through the mount, one brick down: ls shows the live bricks' names, cat reads them, the dead brick's names say ENOTCONN", { skip: fuse }, async () => {
  const { c, mnt, daemon } = await mountCluster('dn');
  try {
    const m = (p: string) => path.join(mnt, p);
    fs.mkdirSync(m('d'));
    const names = Array.from({ length: 24 }, (_, i) => `g${i}`);
    for (const n of names) fs.writeFileSync(m(`d/${n}`), `mounted ${n}`);
    const dead = 2;
    const live = names.filter((n) => brickOf(c, `d/${n}`) !== dead);
    const lost = names.filter((n) => brickOf(c, `d/${n}`) === dead);
    assert.ok(live.length > 0 && lost.length > 0);
    await c.kill(dead);
    // Past the kernel's 1 s caches, so that the mount asks the bricks.
    await new Promise((r) => setTimeout(r, 1200));
    assert.deepEqual(fs.readdirSync(m('d')).sort(), [...live].sort());
    for (const n of live) assert.equal(fs.readFileSync(m(`d/${n}`), 'utf8'), `mounted ${n}`);
    for (const n of lost) assert.throws(() => fs.readFileSync(m(`d/${n}`)), { code: 'ENOTCONN' });
    fs.mkdirSync(m('d2'));
    assert.ok(fs.statSync(m('d2')).isDirectory());
  } finally {
    await unmountCluster(c, mnt, daemon);
  }
});
