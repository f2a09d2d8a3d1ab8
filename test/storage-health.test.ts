/**
 * A hung or failing file system below a brick (issue 17 item 4): the brick goes down, logging why, and
 * clients see one brick down while the others serve. The file system is a real one that really hangs or
 * fails: a small ext4 image on a loop device holds one brick's folder, frozen with fsfreeze(8) (every
 * call that writes blocks in the kernel, uninterruptibly, as on a disk that stopped answering) or shut
 * down with ext4's shutdown ioctl (every call fails with EIO, as on a dead disk). Both need root and a
 * loop device; the tests are skipped without them.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { Volume } from '../src/api/volume.js';
import { STORAGE_HUNG_EXIT } from '../src/storage/disk.js';
import { startCluster, type Cluster } from './helpers/cluster.js';

const run = (cmd: string, args: string[]) => spawnSync(cmd, args, { encoding: 'utf8' });

/** A fresh ext4 file system of 64 MiB on a loop device, mounted; null where this host cannot. */
function loopFs(): { mnt: string; cleanup(): void } | null {
  if (process.getuid?.() !== 0) return null;
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'dhtfs-loopfs-'));
  const img = path.join(base, 'img');
  const mnt = path.join(base, 'mnt');
  fs.mkdirSync(mnt);
  fs.writeFileSync(img, '');
  fs.truncateSync(img, 64 << 20);
  const ok = run('mkfs.ext4', ['-q', img]).status === 0 && run('mount', ['-o', 'loop', img, mnt]).status === 0;
  const cleanup = () => {
    run('fsfreeze', ['-u', mnt]);
    run('umount', [mnt]);
    fs.rmSync(base, { recursive: true, force: true });
  };
  if (!ok) {
    cleanup();
    return null;
  }
  return { mnt, cleanup };
}

const probe = loopFs();
probe?.cleanup();
const skip = probe ? false : 'needs root, mkfs.ext4 and a loop device';

/** Brick limits for the brick processes the next cluster starts (they inherit the environment). */
function withLimits(env: Record<string, string>): () => void {
  const old = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
  Object.assign(process.env, env);
  return () => {
    for (const [k, v] of Object.entries(old)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  };
}

/** Files f0..f23; one whose data is on each brick. */
async function spread(vol: Volume, c: Cluster): Promise<string[]> {
  const byBrick: string[] = [];
  for (let i = 0; i < 24; i++) {
    await vol.writeFile(`/f${i}`, `file ${i}`);
    c.dirs.forEach((d, b) => {
      if (!byBrick[b] && fs.existsSync(path.join(d, `f${i}`)) && fs.statSync(path.join(d, `f${i}`)).size > 0) byBrick[b] = `/f${i}`;
    });
  }
  assert.ok(byBrick[0] && byBrick[1], 'a file on each brick');
  return byBrick;
}

/** Waits until `cond` holds (checked every 50 ms; a test that never gets there fails after a minute). */
async function waitFor(what: () => string, cond: () => boolean): Promise<void> {
  for (let i = 0; !cond(); i++) {
    if (i > 1200) assert.fail(`never: ${what()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The other brick still serves: its file reads, and a listing shows what it holds. */
async function othersServe(vol: Volume, onLive: string): Promise<void> {
  assert.equal(await vol.readFile(onLive, 'utf8'), `file ${onLive.slice(2)}`);
  assert.ok((await vol.readdir('/')).includes(onLive.slice(1)));
}

test('a storage call stuck in a hung file system takes its brick down: logged with the call and path, clients see one brick down', { skip }, async () => {
  const lf = loopFs()!;
  const b0 = fs.mkdtempSync(path.join(os.tmpdir(), 'dhtfs-b0-'));
  const restore = withLimits({ DHTFS_LIMIT_STORAGE_CALL_TIMEOUT_MS: '1500', DHTFS_LIMIT_HEALTH_CHECK_INTERVAL_MS: '0' });
  let c: Cluster | null = null;
  try {
    c = await startCluster(2, { dirs: [b0, path.join(lf.mnt, 'b1')], options: { weightedRebalance: false } });
    const vol = await Volume.connect(c.spec);
    try {
      const [on0, on1] = await spread(vol, c);
      const exited = once(c.procs[1]!, 'exit');
      assert.equal(run('fsfreeze', ['-f', lf.mnt]).status, 0);
      // A chmod of brick 1's file blocks inside fchmodat(2) on the frozen file system, and with it the
      // brick's event loop: the watchdog thread takes the brick down and the call fails.
      await assert.rejects(vol.chmod(on1, 0o600), { code: 'ENOTCONN' });
      assert.match(c.logs[1], /"level":60.*storage call chmod\('f\d+'\) stuck for \d+ ms \(health-check-timeout 1500 ms\): the file system below the brick hangs; taking the brick down/);
      await othersServe(vol, on0);
      // The process ends once the kernel lets its stuck thread go (it cannot be killed before).
      assert.equal(run('fsfreeze', ['-u', lf.mnt]).status, 0);
      const [code] = await exited;
      c.procs[1] = null;
      assert.equal(code, STORAGE_HUNG_EXIT);
    } finally {
      await vol.close();
    }
  } finally {
    restore();
    run('fsfreeze', ['-u', lf.mnt]);
    await c?.stop();
    lf.cleanup();
    fs.rmSync(b0, { recursive: true, force: true });
  }
});

test('the health check: a disk that fails with EIO, and one that stops answering, take the brick down', { skip }, async () => {
  for (const how of ['EIO', 'hang'] as const) {
    const lf = loopFs()!;
    const b0 = fs.mkdtempSync(path.join(os.tmpdir(), 'dhtfs-b0-'));
    // The stuck-call watchdog is off here: the health check alone must see the hang.
    const restore = withLimits({ DHTFS_LIMIT_STORAGE_CALL_TIMEOUT_MS: '0', DHTFS_LIMIT_HEALTH_CHECK_INTERVAL_MS: '300', DHTFS_LIMIT_HEALTH_CHECK_TIMEOUT_MS: '1500' });
    let c: Cluster | null = null;
    try {
      c = await startCluster(2, { dirs: [b0, path.join(lf.mnt, 'b1')], options: { weightedRebalance: false } });
      // The files are written and the client gone before the disk goes bad: no request reaches brick 1
      // afterwards, only the health check meets the bad disk.
      const writer = await Volume.connect(c.spec);
      const [on0, on1] = await spread(writer, c).finally(() => writer.close());
      const exited = once(c.procs[1]!, 'exit');
      if (how === 'EIO') {
        // ext4's shutdown ioctl (EXT4_IOC_SHUTDOWN, no log flush): every call on it fails with EIO from now on.
        const py = "import fcntl,os,struct,sys; fd=os.open(sys.argv[1],os.O_RDONLY); fcntl.ioctl(fd,0x8004587d,struct.pack('I',2))";
        assert.equal(run('python3', ['-c', py, lf.mnt]).status, 0);
        const [code] = await exited;
        c.procs[1] = null;
        assert.equal(code, STORAGE_HUNG_EXIT);
        assert.match(c.logs[1], /"level":60.*health check of brick tv-client-1: (open|write|fsync) of \.glusterfs\/health_check failed with EIO; taking the brick down/);
      } else {
        assert.equal(run('fsfreeze', ['-f', lf.mnt]).status, 0);
        await waitFor(
          () => `the brick logs its end (its log: ${c!.logs[1]})`,
          () => c!.logs[1].includes('"level":60'),
        );
        assert.match(c.logs[1], /"level":60.*health check of brick tv-client-1: a write and fsync of \.glusterfs\/health_check did not finish in 1500 ms \(health-check-timeout\): the file system below the brick hangs; taking the brick down/);
      }
      // Clients see one brick down (its sockets were shut before it could exit), the other serving.
      const vol = await Volume.connect(c.spec);
      try {
        await assert.rejects(vol.readFile(on1), { code: 'ENOTCONN' });
        await othersServe(vol, on0);
      } finally {
        await vol.close();
      }
      if (how === 'hang') {
        // The process ends once the kernel lets its stuck thread go.
        assert.equal(run('fsfreeze', ['-u', lf.mnt]).status, 0);
        const [code] = await exited;
        c.procs[1] = null;
        assert.equal(code, STORAGE_HUNG_EXIT);
      }
    } finally {
      restore();
      run('fsfreeze', ['-u', lf.mnt]);
      await c?.stop();
      lf.cleanup();
      fs.rmSync(b0, { recursive: true, force: true });
    }
  }
});
