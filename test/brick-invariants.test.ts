/** The brick's asserted invariants: the fd table against the open counts, paired enter/exit of tracked changes. */
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { Brick } from '../src/brick/brick.js';
import { checkFdTable } from '../src/brick/fds.js';
import { SrcMigrations } from '../src/migration/src-state.js';
import { DiskStorage } from '../src/storage/disk.js';
import { realClock, realRandom } from '../src/common/real-env.js';
import { LIMIT_DEFAULTS, type BrickLimits } from '../src/wire/limits.js';
import { codeOf, FsError } from '../src/common/errors.js';

const VID = '5f0e8a4c-1d2b-4c3a-9e8f-0a1b2c3d4e5f';

/** Runs `fn` on a brick in a folder of its own (on `disk`'s storage), with these limits over the defaults; the folder goes after. */
async function withBrick(limits: Partial<BrickLimits>, fn: (b: Brick, dir: string) => Promise<void>, disk: (dir: string) => DiskStorage = (d) => new DiskStorage(d)): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dhtfs-inv-'));
  try {
    const b = new Brick(disk(dir), { name: 'v-client-0', volumeId: VID, xattrPrefix: 'user.', limits: { ...LIMIT_DEFAULTS, ...limits } }, realClock, realRandom);
    b.init();
    await fn(b, dir);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

test('an open refused at the fd cap leaves the open count of the file the other fds hold', async () => {
  await withBrick({ maxFdsPerSession: 1 }, async (b) => {
    const s = b.openSession({ remote: 'test', client: 'test' });
    const gfid = randomUUID();
    await b.handle(s, 'create', { path: '/f', mode: 0o644, flags: 2, gfid });
    assert.equal(b.openFdCount(gfid), 1);
    await assert.rejects(
      Promise.resolve().then(() => b.handle(s, 'open', { path: '/f', flags: 0 })),
      (e) => codeOf(e) === 'EMFILE',
    );
    // The refused fd was never counted; it took the open fd's count with it.
    assert.equal(b.openFdCount(gfid), 1);
    checkFdTable(b);
    await assert.rejects(
      Promise.resolve().then(() => b.handle(s, 'unlink', { path: '/f', ifNotOpen: true })),
      (e) => codeOf(e) === 'EBUSY',
    );
    b.closeSession(s);
    assert.equal(b.openFdCount(gfid), 0);
    checkFdTable(b);
  });
});

test('the brick-wide fd cap counts the fds of every session as they open, close and go with their session', async () => {
  await withBrick({ maxFds: 2 }, async (b) => {
    const s1 = b.openSession({ remote: 'test1', client: 'one' });
    const s2 = b.openSession({ remote: 'test2', client: 'two' });
    const { fd } = (await b.handle(s1, 'create', { path: '/a', mode: 0o644, flags: 2, gfid: randomUUID() })) as { fd: number };
    // A create that closes its fd at once (compound create) leaves none behind.
    await b.handle(s2, 'create', { path: '/b', mode: 0o644, flags: 2, gfid: randomUUID(), data: Buffer.alloc(4, 1), close: true });
    await b.handle(s2, 'open', { path: '/b', flags: 0 });
    checkFdTable(b);
    await assert.rejects(
      Promise.resolve().then(() => b.handle(s1, 'open', { path: '/b', flags: 0 })),
      (e) => codeOf(e) === 'EMFILE',
    );
    await b.handle(s1, 'close', { fd });
    await b.handle(s1, 'open', { path: '/a', flags: 0 });
    checkFdTable(b);
    b.closeSession(s2);
    await b.handle(s1, 'open', { path: '/b', flags: 0 });
    checkFdTable(b);
    b.closeSession(s1);
    assert.equal(b.fdsOpen, 0);
    checkFdTable(b);
  });
});

test('a tracked change exits once: a second exit is a bug, asserted', () => {
  const clock = { now: () => 0, wallNow: () => 0, setTimer: () => ({ cancel: () => {} }), sleep: async () => {} };
  const m = new SrcMigrations(clock, { bytes: (k) => Buffer.alloc(k, 1), int: () => 0 }, () => {});
  const g = randomUUID();
  const exit = m.enter(g) as (r: [number, number] | null) => void;
  exit([0, 1]);
  assert.throws(() => exit([0, 1]), { name: 'AssertionError' });
});

test('a private name a crash left behind is made again: create, mkdir and mklinkto succeed over it and leave none', async () => {
  await withBrick({}, async (b, dir) => {
    const s = b.openSession({ remote: 'test', client: 'test' });
    const priv = path.join(dir, '.glusterfs', 'dhtfs-rename');
    // The names made whole under a private name (core.ts makeWhole, which symlinks, mknod and makeLinkto
    // share with create; entry.ts mkdir) and a leftover of each, as a crash before the link or rename
    // into place leaves it.
    const cases: [string, string, Record<string, unknown>, (p: string) => void][] = [
      ['create', '.new', { path: '/f', mode: 0o644, flags: 2, close: true, data: Buffer.from('x') }, (p) => fs.writeFileSync(p, 'old')],
      ['mkdir', '.dir', { path: '/d', mode: 0o755 }, (p) => fs.mkdirSync(p)],
      ['mklinkto', '.new', { path: '/t', target: 'v-client-1' }, (p) => fs.writeFileSync(p, 'old')],
    ];
    for (const [op, suffix, args, leave] of cases) {
      // The private directory exists once the brick made its first name there.
      fs.mkdirSync(priv, { recursive: true });
      const gfid = randomUUID();
      leave(path.join(priv, gfid + suffix));
      const r = (await b.handle(s, op, { ...args, gfid })) as { attr?: { gfid: string }; gfid?: string };
      assert.equal((r.attr ?? r).gfid, gfid, op);
      assert.deepEqual(fs.readdirSync(priv), [], `${op}: no private name left`);
    }
    assert.equal(fs.readFileSync(path.join(dir, 'f'), 'utf8'), 'x');
    assert.ok(fs.statSync(path.join(dir, 'd')).isDirectory());
    // The private directory is made once per brick process; gone meanwhile, it is made again.
    fs.rmSync(priv, { recursive: true });
    const g2 = randomUUID();
    const r2 = (await b.handle(s, 'create', { path: '/f2', mode: 0o644, flags: 2, close: true, gfid: g2 })) as { attr: { gfid: string } };
    assert.equal(r2.attr.gfid, g2);
    b.closeSession(s);
  });
});

/** A disk whose unlinks of private names (the ones made whole, core.ts makeWhole) fail with EIO while `failing` is set. */
class PrivateUnlinkFails extends DiskStorage {
  failing = false;
  override unlink(p: string): void {
    if (this.failing && p.startsWith('.glusterfs/dhtfs-rename/')) throw new FsError('EIO', `test: unlink ${p}`);
    super.unlink(p);
  }
}

test('a create or mklinkto whose private name cannot be unlinked after the link fails, leaving no name of two links', async () => {
  let disk: PrivateUnlinkFails | null = null;
  await withBrick(
    {},
    async (b, dir) => {
      const s = b.openSession({ remote: 'test', client: 'test' });
      const cases: [string, Record<string, unknown>][] = [
        ['create', { path: '/f', mode: 0o644, flags: 2, close: true }],
        ['mklinkto', { path: '/t', target: 'v-client-1' }],
      ];
      for (const [op, args] of cases) {
        disk!.failing = true;
        await assert.rejects(
          Promise.resolve().then(() => b.handle(s, op, { ...args, gfid: randomUUID() })),
          (e) => codeOf(e) === 'EIO',
          op,
        );
        disk!.failing = false;
        // Left, the name's inode had a second link (the private name): the rebalancer took the file for
        // a hard link and left it where it was, and renames marked it (simulator seeds 5756 and 6476).
        assert.equal(fs.existsSync(path.join(dir, String(args.path))), false, `${op}: the name went again`);
        // Made again, the call succeeds.
        await b.handle(s, op, { ...args, gfid: randomUUID() });
        assert.equal(fs.statSync(path.join(dir, String(args.path))).nlink, 2, `${op}: its name and its handle`);
      }
      b.closeSession(s);
    },
    (d) => (disk = new PrivateUnlinkFails(d)),
  );
});
