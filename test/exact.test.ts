/**
 * What a caller is told is what happened (issue 17, item 8): a write that fits only in part returns its
 * short count, as write(2) does, and leaves exactly that many bytes; what the library makes takes the
 * process's umask.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { Volume } from '../src/api/volume.js';
import { startCluster } from './helpers/cluster.js';

const isRoot = process.getuid?.() === 0;

test('a write that fits only in part returns its short count, and the file holds exactly what was reported', { skip: !isRoot && 'needs root to mount a small tmpfs' }, async () => {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'dhtfs-short-'));
  const dir = path.join(base, 'b0');
  fs.mkdirSync(dir);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=3m', 'tmpfs', dir]);
  const c = await startCluster(1, { dirs: [dir], options: { minFreeDisk: 0, minFreeInodes: 0 } });
  try {
    const vol = await Volume.connect(c.spec);
    try {
      // An append log: records of 1 MB until the disk is full. Every record is either whole, or cut
      // short and reported so, or refused with nothing written.
      const log = await vol.open('/log', 'a');
      const record = Buffer.alloc(1_000_000, 0x61);
      let reported = 0;
      let short = 0;
      let error: string | null = null;
      for (let i = 0; i < 8 && error === null; i++) {
        try {
          const { bytesWritten } = await log.write(record);
          reported += bytesWritten;
          if (bytesWritten < record.length) short++;
        } catch (e) {
          error = (e as { code?: string }).code ?? 'unknown';
        }
      }
      await log.close();
      assert.ok(short >= 1, 'one append was cut short by the full disk and said so');
      assert.equal(error, 'ENOSPC', 'the next one was refused');
      assert.equal((await vol.stat('/log')).size, reported, 'the log holds exactly the bytes reported written');
      // A positioned write into a new file: the same.
      await vol.unlink('/log');
      await vol.writeFile('/pad', Buffer.alloc(2_500_000, 1));
      const h = await vol.open('/big', 'w');
      let got: number | string;
      try {
        got = (await h.write(Buffer.alloc(1_000_000, 2), 0, 1_000_000, 0)).bytesWritten;
      } catch (e) {
        got = (e as { code?: string }).code ?? 'unknown';
      }
      await h.close();
      assert.equal(typeof got, 'number', `a partial write returns a count (got ${got})`);
      assert.ok((got as number) > 0 && (got as number) < 1_000_000);
      // Its pieces travel in parallel: one past the short one may have landed too (the file is then
      // longer than the count says); the count's bytes are all there.
      assert.ok((await vol.stat('/big')).size >= (got as number));
      const back = await vol.readFile('/big');
      assert.ok(
        back.subarray(0, got as number).every((b) => b === 2),
        'the bytes counted are written',
      );
      // writeFile cannot return a count: it fails, as fs.writeFile does.
      await assert.rejects(vol.writeFile('/whole', Buffer.alloc(1_000_000, 3)), { code: 'ENOSPC' });
    } finally {
      await vol.close();
    }
  } finally {
    await c.stop();
    execFileSync('umount', [dir]);
    fs.rmSync(base, { recursive: true, force: true });
  }
});

test("files, directories and FIFOs made through the library take the process's umask", async () => {
  const c = await startCluster(2);
  const was = process.umask(0o027);
  try {
    const vol = await Volume.connect(c.spec);
    const vol0 = await Volume.connect(c.spec, { umask: 0 });
    try {
      await vol.writeFile('/f', 'x');
      assert.equal((await vol.stat('/f')).mode & 0o777, 0o640);
      await vol.writeFile('/big', Buffer.alloc(3 << 20));
      assert.equal((await vol.stat('/big')).mode & 0o777, 0o640);
      const h = await vol.open('/g', 'w', 0o666);
      await h.close();
      assert.equal((await vol.stat('/g')).mode & 0o777, 0o640);
      await vol.mkdir('/d');
      assert.equal((await vol.stat('/d')).mode & 0o777, 0o750);
      await vol.mkdir('/p/q', { recursive: true });
      assert.equal((await vol.stat('/p/q')).mode & 0o777, 0o750);
      await vol.mkfifo('/fifo', 0o666);
      assert.equal((await vol.stat('/fifo')).mode & 0o777, 0o640);
      // An explicit umask (the FUSE mount's 0: the kernel applied the caller's) is used as given.
      await vol0.writeFile('/h', 'x');
      assert.equal((await vol0.stat('/h')).mode & 0o777, 0o666);
      await vol0.mkdir('/e');
      assert.equal((await vol0.stat('/e')).mode & 0o777, 0o777);
    } finally {
      await vol.close();
      await vol0.close();
    }
  } finally {
    process.umask(was);
    await c.stop();
  }
});

test('a write cut off by the ping-timeout is never applied after it, and says its outcome is unknown', async () => {
  const c = await startCluster(1, { options: { pingTimeout: 1 } });
  try {
    const vol = await Volume.connect(c.spec);
    try {
      const log = await vol.open('/log', 'a');
      await log.write('one\n');
      // The brick stops before the next record reaches it; the client gives up on it after 1 s of silence.
      c.procs[0]!.kill('SIGSTOP');
      let err = null as { code?: string; info?: { maybeApplied?: boolean } } | null;
      try {
        await log.write('two\n');
      } catch (e) {
        err = e as typeof err;
      }
      assert.equal(err?.code, 'ENOTCONN', 'the append fails once the ping-timeout runs out');
      assert.equal(err?.info?.maybeApplied, true, 'and says it may or may not have been applied');
      // A call made while the brick is out of reach was never sent: it says nothing of the kind.
      const again = await vol.readFile('/log').then(
        () => null,
        (e: { code?: string; info?: { maybeApplied?: boolean } }) => e,
      );
      assert.equal(again?.code, 'ENOTCONN');
      assert.equal(again?.info?.maybeApplied, undefined);
      await new Promise((r) => setTimeout(r, 500));
      c.procs[0]!.kill('SIGCONT');
      // The brick reads the record it was sent, past its deadline: it must not append it.
      let back: string | null = null;
      for (let t = 0; t < 50 && back === null; t++) {
        back = await vol.readFile('/log', 'utf8').catch(() => null);
        if (back === null) await new Promise((r) => setTimeout(r, 200));
      }
      assert.equal(back, 'one\n', 'the record the client was told failed is not in the log');
      await log.close().catch(() => {});
    } finally {
      await vol.close();
    }
  } finally {
    await c.stop();
  }
});
