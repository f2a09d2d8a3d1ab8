/** The safe migration protocol on real brick processes. */
import test, { after, before } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { Volume } from '../src/api/volume.js';
import { migrateFile } from '../src/migration/migrator.js';
import { SAFE_STEPS, type SafeStep } from '../src/migration/steps.js';
import { pauseAfter, startCluster, type Cluster } from './helpers/cluster.js';
import { handleFile, namesOn, onDisk } from './helpers/disk.js';
import { openFiles, openModes } from './helpers/fds.js';
import { rotateLayout } from './helpers/layout.js';

let c: Cluster;
let names: string[];
let app1: Volume; // connected before the layout changed; holds fds from before
let files: string[];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

before(async () => {
  c = await startCluster(2);
  names = c.spec.bricks.map((b) => b.name);
  app1 = await Volume.connect(c.spec);
  files = namesOn(c.dirs, names, '/', 0, 24, 'm');
  for (const f of files) await app1.writeFile(`/${f}`, Buffer.from(`old-content-of-${f}`.padEnd(64, '.')), { mode: 0o640 });
  rotateLayout(c.dirs, names); // every file now hashes to brick 1 but lives on brick 0
});
after(async () => {
  await app1?.close();
  await c?.stop();
});

/** The end state of a migrated file: one data file on brick 1, nothing on brick 0, no temp copies. */
function assertMigrated(f: string, gfid: string | null): void {
  const d = onDisk(c.dirs[1], f)!;
  assert.ok(d, `${f} on brick 1`);
  assert.equal(d.linkto, null, 'a data file, not a linkto');
  assert.equal(d.gfid, gfid);
  assert.equal(d.mode & 0o7777, 0o640, 'the user mode, no S/T bits');
  assert.equal(onDisk(c.dirs[0], f), null, 'nothing left on brick 0');
  for (const dir of c.dirs) {
    const tmp = path.join(dir, '.glusterfs', 'dhtfs-migrate');
    if (fs.existsSync(tmp))
      assert.deepEqual(
        fs.readdirSync(tmp).filter((n) => n.startsWith(gfid!)),
        [],
        'no temp copy left',
      );
  }
}

test('a file migrates with its bytes, mode, owner, times and xattrs', async () => {
  const f = files[0];
  const v = await Volume.connect(c.spec);
  const data = randomBytes(3 * 1024 * 1024 + 17);
  await v.writeFile(`/${f}`, data);
  await v.chown(`/${f}`, 4321, 8765);
  await v.setxattr(`/${f}`, 'user.tag', 'kept');
  await v.utimes(`/${f}`, 1_500_000_000, 1_600_000_000);
  const before = await v.stat(`/${f}`);
  const r = await migrateFile(v.client, `/${f}`, { chunk: 256 * 1024 });
  assert.equal(r.result, 'migrated');
  assertMigrated(f, before.gfid);
  const v2 = await Volume.connect(c.spec);
  assert.ok((await v2.readFile(`/${f}`)).equals(data));
  const st = await v2.stat(`/${f}`);
  assert.equal(st.uid, 4321);
  assert.equal(st.gid, 8765);
  assert.equal(st.mode & 0o7777, 0o640);
  assert.equal(st.mtimeMs, 1_600_000_000_000);
  assert.equal((await v2.getxattr(`/${f}`, 'user.tag')).toString(), 'kept');
  assert.equal(st.gfid, before.gfid);
  assert.equal((await migrateFile(v2.client, `/${f}`)).result, 'nothing', 'already on its hashed brick');
  assert.deepEqual(
    (await v2.readdir('/')).filter((n) => n === f),
    [f],
  );
  await v.close();
  await v2.close();
});

SAFE_STEPS.forEach((pauseAt, i) => {
  test(`seed timeline, migrator paused after '${pauseAt}': app1 never reads stale data`, async () => {
    const f = files[i + 1];
    const p = `/${f}`;
    const h1 = await app1.open(p, 'r+'); // app1's fd is on src (brick 0)
    const migrator = await Volume.connect(c.spec);
    const pause = pauseAfter(pauseAt);
    const mig = migrateFile(migrator.client, p, { afterStep: pause.hook });
    await pause.paused;
    // app2 looks the file up now, opens it, writes, fsyncs, and notifies app1.
    const app2 = await Volume.connect(c.spec);
    const w = (async () => {
      const h2 = await app2.open(p, 'r+');
      await h2.write('NEW!', 0, 4, 0);
      await h2.sync();
      await h2.close();
    })();
    // While frozen, src holds app2's write: let the migrator go on if app2 does not finish soon.
    await Promise.race([w, sleep(300)]);
    pause.resume();
    await w;
    // notify -> app1 reads through the fd it opened before the migration.
    const buf = Buffer.alloc(64);
    const { bytesRead } = await h1.read(buf, 0, 64, 0);
    assert.equal(bytesRead, 64);
    assert.equal(buf.toString('utf8', 0, 4), 'NEW!', "app1 sees app2's fsynced write");
    assert.equal(buf.toString('utf8', 4, 4 + `content-of-${f}`.length), `content-of-${f}`, 'bytes app2 did not write are intact');
    const r = await mig;
    assert.equal(r.result, 'migrated');
    // app1's fd now works on dst for writes too.
    await h1.write('app1', 0, 4, 60);
    await h1.close();
    const back = await app2.readFile(p);
    assert.equal(back.toString('utf8', 0, 4), 'NEW!');
    assert.equal(back.toString('utf8', 60, 64), 'app1');
    assertMigrated(f, (await app2.stat(p)).gfid);
    await app2.close();
    await migrator.close();
  });
});

test('every fd operation of an old fd follows the file: SEEK_DATA/SEEK_HOLE, fstat, truncate, fsync', async () => {
  const f = files[17];
  const p = `/${f}`;
  const h = await app1.open(p, 'r+');
  const src = h.loc.cached;
  assert.equal(await h.seek(0, 'data'), 0);
  const v = await Volume.connect(c.spec);
  assert.equal((await migrateFile(v.client, p)).result, 'migrated');
  // The first operation after the commit is answered by dst, not by the old copy (F9).
  assert.equal(await h.seek(3, 'data'), 3);
  assert.notEqual(h.loc.cached, src, 'the handle moved to dst');
  assert.equal(await h.seek(0, 'hole'), 64);
  await assert.rejects(h.seek(64, 'data'), { code: 'ENXIO' });
  await h.truncate(10);
  await h.sync();
  assert.equal((await h.stat()).size, 10);
  assert.equal((await v.stat(p)).size, 10, 'others see it');
  await h.close();
  await v.close();
});

test('writes during the copy are re-copied: nothing is lost', async () => {
  const f = files[15];
  const p = `/${f}`;
  const v = await Volume.connect(c.spec);
  const size = 8 * 1024 * 1024;
  const model = Buffer.alloc(size, 0);
  await v.writeFile(p, model);
  const h = await v.open(p, 'r+');
  let stop = false;
  let writes = 0;
  const writer = (async () => {
    while (!stop) {
      const off = Math.floor(Math.random() * (size - 8));
      const val = Buffer.from(randomBytes(8));
      await h.write(val, 0, 8, off); // acknowledged: must survive the migration
      val.copy(model, off);
      writes++;
    }
  })();
  const r = await migrateFile(v.client, p, { chunk: 64 * 1024, window: 1 });
  stop = true;
  await writer;
  assert.equal(r.result, 'migrated');
  assert.ok(writes > 10, `the writer made ${writes} writes during the migration`);
  await h.close();
  const v2 = await Volume.connect(c.spec);
  assert.ok((await v2.readFile(p)).equals(model), 'every acknowledged write is in the migrated file');
  await v.close();
  await v2.close();
});

test('a migrator whose lease expired is fenced; client I/O goes on at src', async () => {
  const f = files[16];
  const p = `/${f}`;
  const v = await Volume.connect(c.spec);
  const mig = await Volume.connect(c.spec);
  let hung!: () => void;
  const wake = new Promise<void>((r) => (hung = r));
  const run = migrateFile(mig.client, p, {
    leaseMs: 300,
    afterStep: async (s) => {
      if (s === 'copy') {
        mig.client.close(); // a partitioned migrator: its connection (and lease renewals) are gone
        await wake;
      }
    },
  });
  await sleep(100);
  // Client I/O goes on at src while the migrator hangs.
  await v.writeFile(p, 'written while the migrator hung');
  hung();
  await assert.rejects(run, (e: { code?: string }) => e.code === 'EFENCED' || e.code === 'ENOTCONN');
  assert.equal(await v.readFile(p, 'utf8'), 'written while the migrator hung');
  assert.ok(onDisk(c.dirs[0], f) && onDisk(c.dirs[0], f)!.linkto === null, 'the file is still on src');
  // A new run completes.
  const again = await Volume.connect(c.spec);
  assert.equal((await migrateFile(again.client, p)).result, 'migrated');
  assert.equal(await again.readFile(p, 'utf8'), 'written while the migrator hung');
  await v.close();
  await mig.close();
  await again.close();
});

test('a migrator whose connection to dst was made again aborts: its old fd numbers never reach another file', async () => {
  const f = files[18];
  const p = `/${f}`;
  const mig = await Volume.connect(c.spec);
  const pause = pauseAfter<SafeStep>('copy');
  const run = migrateFile(mig.client, p, { afterStep: pause.hook }).then(
    (r) => ({ ok: true as const, r }),
    (e: unknown) => ({ ok: false as const, e }),
  );
  const first = await Promise.race([pause.paused.then(() => null), run]);
  assert.equal(first, null, `the migration got to its copy (${JSON.stringify(first)})`);
  // dst restarts: the migrator's connection (and its fds there) are gone; a new connection numbers fds anew.
  await c.restart(1);
  await sleep(1100); // the client waits a second before re-dialling
  const victimName = namesOn(c.dirs, names, '/', 1, 1, 'victim')[0]; // on dst, as the migrator's copy
  const victim = await mig.open(`/${victimName}`, 'w'); // the first fd on the new connection to dst
  await victim.write(Buffer.from('VICTIM'));
  // A client changes the file meanwhile, so the migrator has ranges to re-copy (through its dst fd).
  await app1.writeFile(p, Buffer.from('changed during the migration'.padEnd(64, '!')));
  pause.resume();
  const out = await run;
  assert.equal(out.ok, false, 'the migration is aborted');
  assert.equal(await mig.readFile(`/${victimName}`, 'utf8'), 'VICTIM', 'the other file is untouched');
  assert.equal(onDisk(c.dirs[1], victimName)!.size, 6);
  assert.equal(await app1.readFile(p, 'utf8'), 'changed during the migration'.padEnd(64, '!'));
  await victim.close();
  await mig.close();
});

test("bricks of one host: dst reads the file from src's disk and no byte passes through the migrator; migPull takes nothing but this file of a brick of this volume", async () => {
  const v = await Volume.connect(c.spec);
  try {
    // What the migrator's own fds carry.
    const seen: Record<string, number> = {};
    const fdCall = v.client.fdCall.bind(v.client);
    v.client.fdCall = ((fd, op, args, into) => {
      seen[op] = (seen[op] ?? 0) + 1;
      return fdCall(fd, op, args, into);
    }) as typeof v.client.fdCall;
    const data = randomBytes(5 * 1024 * 1024 + 3);
    for (const [f, pull] of [
      [files[19], true],
      [files[20], false],
    ] as const) {
      await v.writeFile(`/${f}`, data, { mode: 0o640 });
      const gfid = (await v.stat(`/${f}`)).gfid;
      for (const k of Object.keys(seen)) delete seen[k];
      assert.equal((await migrateFile(v.client, `/${f}`, { chunk: 1 << 20, pull })).result, 'migrated');
      assertMigrated(f, gfid);
      assert.ok((await v.readFile(`/${f}`)).equals(data));
      if (pull) {
        assert.ok((seen.migPull ?? 0) >= 6, 'dst pulled the pieces');
        assert.equal((seen.read ?? 0) + (seen.write ?? 0), 0, 'no piece went through the migrator');
      } else {
        assert.equal(seen.migPull ?? 0, 0);
        assert.ok((seen.read ?? 0) >= 6, 'the pieces went through the migrator');
      }
    }

    const f = files[21];
    await v.writeFile(`/${f}`, 'the file');
    const gfid = (await v.stat(`/${f}`)).gfid!;
    const [src, dst] = names;
    const lease = await v.client.sv(src).call('migLease', { path: `/${f}`, gfid, dst, leaseMs: 5000 });
    const source = (await v.client.sv(src).call('migSource', { gfid, token: lease.token })).source!;
    assert.equal(source.root, path.resolve(c.dirs[0]));
    await assert.rejects(v.client.sv(src).call('migSource', { gfid, token: 'not-the-token' }), { code: 'EFENCED' });
    const { fd } = await v.client.sv(dst).call('migPrepare', { path: `/${f}`, gfid, src, token: lease.token, uid: 0, gid: 0 });
    const pull = (s: unknown, onFd = fd) => v.client.sv(dst).call('migPull', { fd: onFd, source: s as never, offset: 0, length: 100 }); // hostile sources too
    // A directory laid out like a brick, with the same file name, but not a brick of this volume.
    const fake = fs.mkdtempSync(path.join(c.base, 'fake-'));
    fs.mkdirSync(path.dirname(path.join(fake, source.path)), { recursive: true });
    fs.writeFileSync(path.join(fake, source.path), 'not of this volume');
    await assert.rejects(pull({ ...source, root: fake }), { code: 'EXDEV' });
    await assert.rejects(pull({ ...source, host: 'another-host' }), { code: 'EXDEV' });
    await assert.rejects(pull({ ...source, path: '.glusterfs/../../../etc/passwd' }), { code: 'EINVAL' });
    await assert.rejects(pull(null), { code: 'EINVAL' });
    // Only into a migration copy.
    const other = await v.client.sv(dst).call('open', { gfid: (await v.stat(`/${files[19]}`)).gfid, flags: 2 });
    await assert.rejects(pull(source, other.fd), { code: 'EBADF' });
    await v.client.sv(dst).call('close', { fd: other.fd });
    assert.equal((await pull(source)).copied, 8, 'the real source is copied');
    await v.client.sv(src).call('migAbort', { gfid, token: lease.token });
    await v.client
      .sv(dst)
      .call('close', { fd })
      .catch(() => {});
    fs.rmSync(fake, { recursive: true, force: true });
  } finally {
    await v.close();
  }
});

/** Files of this host the test process holds open, as /proc shows them. */
const held = (): string[] => openFiles('self');

test("local reads: a library handle reads its brick's file itself, sees other clients' writes, and follows the file when it migrates", async () => {
  const f = files[22];
  const other = await Volume.connect(c.spec);
  const h = await app1.open(`/${f}`, 'r');
  const gfid = h.gfid!;
  const handle = (dir: string) => handleFile(dir, gfid);
  const b = Buffer.alloc(128);
  const read = async () => b.subarray(0, (await h.read(b, 0, b.length, 0)).bytesRead).toString();
  assert.equal(await read(), `old-content-of-${f}`.padEnd(64, '.'));
  // After a read through the brick, the handle opens the brick's own file (brick 0 holds it).
  for (let i = 0; i < 100 && !held().includes(handle(c.dirs[0])); i++) await sleep(10);
  assert.ok(held().includes(handle(c.dirs[0])), "the client holds brick 0's data file");
  await other.writeFile(`/${f}`, 'written by another client');
  assert.equal(await read(), 'written by another client');
  // The file migrates to brick 1 and is written there: the handle's next read has the new bytes.
  assert.equal((await migrateFile(other.client, `/${f}`)).result, 'migrated');
  await other.writeFile(`/${f}`, 'written on its new brick, longer');
  assert.equal(await read(), 'written on its new brick, longer');
  for (let i = 0; i < 100 && !held().includes(handle(c.dirs[1])); i++) await sleep(10);
  assert.ok(held().includes(handle(c.dirs[1])), "the client holds brick 1's data file now");
  assert.ok(!held().some((l) => l.startsWith(handle(c.dirs[0]))), 'and no longer the old copy');
  await h.close();
  assert.ok(!held().some((l) => l.includes(gfid)), 'once close() resolves, no descriptor of the file is left');
  // A handle closed right after its first read, while the local open that read began is in flight:
  // close() waits for it, so nothing of the file outlives it (an unlinked file's blocks are then free).
  for (let i = 0; i < 5; i++) {
    const h2 = await app1.open(`/${f}`, 'r');
    await h2.read(b, 0, b.length, 0);
    await h2.close();
    assert.ok(!held().some((l) => l.includes(gfid)), `round ${i}: no descriptor left after close()`);
  }
  await other.close();
});

/** The access modes (O_RDONLY, O_WRONLY or O_RDWR) of this process's descriptors of `file`. */
const heldModes = (file: string): number[] => openModes('self', file);

test("local writes: a library handle writes its brick's file itself, is shut out while a migration is live (its writes then go through the brick, which tracks them), and loses no write to a migration", async () => {
  const f = files[23];
  const other = await Volume.connect(c.spec);
  const h = await app1.open(`/${f}`, 'r+');
  const gfid = h.gfid!;
  const file = (dir: string) => handleFile(dir, gfid);
  const [src, dst] = names;
  const stopped = async (what: () => Promise<unknown>, ms: number): Promise<boolean> => {
    // Whether `what` completes within `ms` while brick 0's process is stopped.
    c.procs[0]!.kill('SIGSTOP');
    try {
      return await Promise.race([what().then(() => true), sleep(ms).then(() => false)]);
    } finally {
      c.procs[0]!.kill('SIGCONT');
    }
  };
  try {
    // Two writes through the brick; then the handle opens the brick's file for reading and writing.
    await h.write('first', 0, 5, 0);
    await h.write('second', 0, 6, 5);
    for (let i = 0; i < 100 && !heldModes(file(c.dirs[0])).includes(2); i++) await sleep(10);
    assert.ok(heldModes(file(c.dirs[0])).includes(2), "the client holds brick 0's data file open for writing");
    // With brick 0's process stopped, a write completes: the client makes it itself.
    assert.ok(await stopped(() => h.write('LOCAL', 0, 5, 20), 3000), 'a local write needs no brick');
    const onDisk = fs.readFileSync(path.join(c.dirs[0], f), 'utf8');
    assert.equal(onDisk.slice(0, 11) + onDisk.slice(20, 25), 'firstsecondLOCAL');
    // A migration's lease shuts local writers out: a write now needs the brick, which tracks it.
    const lease = await other.client.sv(src).call('migLease', { path: `/${f}`, gfid, dst, leaseMs: 10_000 });
    const w = h.write('TRACKED', 0, 7, 30);
    assert.equal(await stopped(() => w, 300), false, 'the write waits for the stopped brick');
    await w;
    const dirty = await other.client.sv(src).call('migDirty', { gfid, token: lease.token });
    assert.ok(
      dirty.ranges.some(([a, b]) => a <= 30 && b >= 37),
      `the brick tracked the write: ${JSON.stringify(dirty.ranges)}`,
    );
    await other.client.sv(src).call('migAbort', { gfid, token: lease.token });
    // The migration is gone: local writes again.
    assert.ok(await stopped(() => h.write('AGAIN', 0, 5, 40), 3000), 'local writes resume once the migration ends');
    // A whole migration while the handle keeps writing, and writes after it, on the new brick: all there.
    const writes = (async () => {
      for (let i = 0; i < 200; i++) await h.write(`w${String(i).padStart(3, '0')};`, 0, 5, 64 + i * 5);
    })();
    await sleep(5);
    assert.equal((await migrateFile(other.client, `/${f}`)).result, 'migrated');
    await writes;
    // Writes after the commit whatever the race above (the 200 may all have finished before it): the
    // handle follows the file to brick 1 and, writing on, opens brick 1's file itself.
    for (let i = 200; i < 203; i++) await h.write(`w${String(i).padStart(3, '0')};`, 0, 5, 64 + i * 5);
    const want = Array.from({ length: 203 }, (_, i) => `w${String(i).padStart(3, '0')};`).join('');
    const back = await other.readFile(`/${f}`);
    assert.equal(back.subarray(64).toString(), want);
    assert.equal(back.subarray(30, 37).toString(), 'TRACKED');
    assert.equal(back.subarray(40, 45).toString(), 'AGAIN');
    for (let i = 0; i < 100 && !heldModes(file(c.dirs[1])).includes(2); i++) await sleep(10);
    assert.ok(heldModes(file(c.dirs[1])).includes(2), "the client writes brick 1's data file now");
  } finally {
    await h.close();
    await other.close();
  }
});
