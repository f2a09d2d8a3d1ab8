/**
 * npm run bench: dhtfs through the library API over 3 local brick processes, against the same work done
 * directly on the local disk in the same run. Prints each figure and its ratio.
 *
 *   BENCH_SIZE_MB (default 1024)   size of the sequential file
 *   BENCH_FILES   (default 10000)  number of 4 KiB files
 *   BENCH_ROUNDS  (default 5)      rounds of the sequential write and read (the median is reported)
 *   BENCH_WARM    (default 0)      creates made (untimed) before the basic part's measured ones: the bricks'
 *                                  CPU per create in steady state (8000: about half of it with none)
 *   BENCH_ONLY    (default all)    basic,fuse,rebalance,tls,hosts: the parts to run (hosts: a rebalance
 *                                  between hosts in network namespaces, root only; see bench/hosts.ts)
 *   BENCH_TLS_MB (default 256), BENCH_TLS_FILES (default 4000), BENCH_TLS_ROUNDS (default 3): the TLS part's sizes
 *   BENCH_GLUSTER (default on)     0 leaves GlusterFS's FUSE mount out of the FUSE part
 *   BENCH_FUSE_MB, BENCH_FUSE_FILES, BENCH_REBALANCE_FILES, BENCH_REBALANCE_MB: sizes of the other parts
 *   BENCH_FUSE_ROUNDS (default 5)  rounds of the FUSE part's sequential write and read (the median is reported)
 *   BENCH_PULL    (default on)     0 makes large-file migrations copy through the rebalancer (as between hosts)
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Volume } from '../src/api/volume.js';
import { startCluster } from '../test/helpers/cluster.js';
import { namesOn } from '../test/helpers/disk.js';
import { startMount } from '../test/helpers/mount.js';
import { rotateLayout } from '../test/helpers/layout.js';
import { Rebalancer, type Checkpoint } from '../src/rebalance/rebalancer.js';
import { issue } from '../src/cli/cert.js';
import { hostsBench } from './hosts.js';

const SIZE = Number(process.env.BENCH_SIZE_MB ?? 1024) * 1024 * 1024;
const FILES = Number(process.env.BENCH_FILES ?? 10000);
const WARM = Number(process.env.BENCH_WARM ?? 0);
const PIECE = 8 * 1024 * 1024;
const CONCURRENCY = 16;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const REB_FILES = Number(process.env.BENCH_REBALANCE_FILES ?? 3000);
const REB_BIG_MB = Number(process.env.BENCH_REBALANCE_MB ?? 256);

/**
 * The bench's files are removed only at the end of the run. ext4 skips free inodes whose deletion is
 * recent (a minute, or five while their table block is dirty) and checks each one it skips, so creating
 * files soon after thousands were removed costs up to 40 times as much (seen here: 20 us -> 900 us per
 * create): removing one part's files before the next part creates its own would slow that part down,
 * and whichever of the compared columns ran later.
 */
const atEnd: (() => void)[] = [];
function removeLater(dir: string): void {
  atEnd.push(() => fs.rmSync(dir, { recursive: true, force: true }));
}

function dropCaches(): boolean {
  try {
    fs.writeFileSync('/proc/sys/vm/drop_caches', '3');
    return true;
  } catch {
    return false;
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

async function timed(fn: () => Promise<void>): Promise<number> {
  const t = performance.now();
  await fn();
  return (performance.now() - t) / 1000;
}

async function pool(n: number, width: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < n) await fn(next++);
    }),
  );
}

interface Row {
  work: string;
  local: string;
  dhtfs: string;
  ratio: number;
  target?: number;
}

function fmtRate(bytes: number, s: number): string {
  return `${(bytes / s / 1e6).toFixed(0)} MB/s`;
}

function memStore() {
  let saved: Checkpoint | null = null;
  return { load: () => saved, save: (c: Checkpoint) => void (saved = structuredClone(c)) };
}

/**
 * Copies files between brick folders the plain way (the reference for rebalance throughput). With
 * `durable`, each copy is fsynced, as a migration must make its copy durable before it commits.
 */
async function plainCopy(pairs: [string, string][], width: number, durable: boolean): Promise<number> {
  return timed(() =>
    pool(pairs.length, width, async (i) => {
      await fsp.copyFile(pairs[i][0], pairs[i][1]);
      if (durable) {
        const h = await fsp.open(pairs[i][1], 'r');
        await h.sync();
        await h.close();
      }
    }),
  );
}

/**
 * Rebalance throughput on small and on large files, against a plain copy of the same files between the
 * same brick folders; and the longest wait of a client writing to a large file while it migrates.
 */
async function rebalanceBench(rows: Row[]): Promise<string[]> {
  const notes: string[] = [];
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'dhtfs-rbench-'));
  const c = await startCluster(2, { dirs: [0, 1].map((i) => path.join(base, `b${i}`)) });
  const names = c.spec.bricks.map((b) => b.name);
  try {
    const vol = await Volume.connect(c.spec);
    await vol.mkdir('/s');
    await vol.mkdir('/l');
    // Files on brick 0 that belong on brick 1 once the directory's layout is rotated.
    const small = namesOn(c.dirs, names, '/s', 0, REB_FILES, 'f');
    const data = Buffer.alloc(4096, 5);
    await pool(small.length, 16, (i) => vol.writeFile(`/s/${small[i]}`, data));
    const big = namesOn(c.dirs, names, '/l', 0, 2, 'big');
    const piece = Buffer.alloc(PIECE, 9);
    for (const n of big) {
      const h = await vol.open(`/l/${n}`, 'w');
      for (let off = 0; off < REB_BIG_MB << 20; off += PIECE) await h.write(piece, 0, PIECE, off);
      await h.close();
    }
    // Reference: plain copies of the same files from a brick's folder to a folder beside the bricks (the
    // same file system), a folder of its own for each copy, all removed at the end of the run (see
    // `removeLater`).
    let copies = 0;
    const copyRef = (names: string[], from: string, durable: boolean) => {
      const to = path.join(base, `copy-ref-${copies++}`);
      fs.mkdirSync(to);
      return plainCopy(
        names.map((n) => [path.join(from, n), path.join(to, n)]),
        2,
        durable,
      );
    };
    const smallCopy = await copyRef(small, path.join(c.dirs[0], 's'), false);
    const smallCopyDurable = await copyRef(small, path.join(c.dirs[0], 's'), true);
    dropCaches();
    const bigCopyFast = await copyRef(big, path.join(c.dirs[0], 'l'), false);
    dropCaches();
    const bigCopy = await copyRef(big, path.join(c.dirs[0], 'l'), true);
    const bigBytes = big.length * (REB_BIG_MB << 20);
    notes.push(
      `plain copies from the source brick's folder: ${small.length} small files ${(small.length / smallCopy).toFixed(0)}/s (${(small.length / smallCopyDurable).toFixed(0)}/s with fsync); large files ${fmtRate(bigBytes, bigCopyFast)} (${fmtRate(bigBytes, bigCopy)} with fsync)`,
    );

    rotateLayout(c.dirs, names, '/s');
    const rb = await Volume.connect(c.spec);
    const rs = await new Rebalancer(rb.client, { store: memStore(), throttle: Number(process.env.BENCH_THROTTLE ?? 2) }).run();
    const smallRate = rs.counters.migrated / (rs.elapsedMs / 1000);
    rows.push({ work: `rebalance ${small.length} files of 4 KiB`, local: `${(small.length / smallCopyDurable).toFixed(0)} files/s`, dhtfs: `${smallRate.toFixed(0)} files/s`, ratio: smallRate / (small.length / smallCopyDurable) });

    // Large files, twice. First on an idle volume, as the plain copy ran: the throughput. Then back to
    // their first brick while a client keeps writing to one of them: its longest wait is the switch pause
    // (and the throughput under that load is reported too).
    const migrateBig = async (withWriter: boolean) => {
      rotateLayout(c.dirs, names, '/l');
      const writer = await Volume.connect(c.spec);
      const h = withWriter ? await writer.open(`/l/${big[0]}`, 'r+') : null;
      const lat: number[] = [];
      const spans: [number, number][] = [];
      let stop = false;
      const rec = Buffer.alloc(4096, 1);
      const w = (async () => {
        for (let i = 0; h && !stop; i++) {
          const t = performance.now();
          await h.write(rec, 0, rec.length, (i * 4096) % (REB_BIG_MB << 20));
          const e = performance.now();
          lat.push(e - t);
          spans.push([t, e]);
        }
      })();
      dropCaches();
      // The switch of the written file: from just before its freeze to the end of its install.
      let switchStart = Infinity;
      let switchEnd = -Infinity;
      // The migrations' span, from the first lease to the last release (the run also scans the other
      // directories, which a copy of the two files does not).
      let firstLease = Infinity;
      let lastRelease = -Infinity;
      const migrate = {
        chunk: Number(process.env.BENCH_CHUNK_MB ?? 2) << 20,
        window: Number(process.env.BENCH_WINDOW ?? 4),
        pull: process.env.BENCH_PULL !== '0',
        afterStep: (st: string, p: string) => {
          if (st === 'lease') firstLease = Math.min(firstLease, performance.now());
          if (st === 'release') lastRelease = Math.max(lastRelease, performance.now());
          if (p !== `/l/${big[0]}`) return;
          if (st === 'recopy') switchStart = performance.now();
          if (st === 'install') switchEnd = performance.now();
        },
      };
      const rl = await new Rebalancer(rb.client, {
        store: memStore(),
        throttle: Number(process.env.BENCH_THROTTLE ?? 2),
        restart: true,
        migrate,
        log: (m) => {
          if (/failed/.test(m)) notes.push(m);
        },
      }).run();
      stop = true;
      await w;
      await h?.close();
      await writer.close();
      const spanMs = lastRelease - firstLease;
      const bytes = rl.counters.bytes;
      notes.push(
        `large-file rebalance${withWriter ? ' with a client writing' : ''}: ${rl.state}, migrated ${rl.counters.migrated}, skipped ${rl.counters.skipped}, failed ${rl.counters.failed}${rl.error ? `, ${rl.error}` : ''}; ${(bytes / 1e6).toFixed(0)} MB copied (re-copies included) in ${spanMs.toFixed(0)} ms of migrations (${(bytes / (spanMs / 1000) / 1e6).toFixed(0)} MB/s); the whole run, scanning ${small.length} other files too, took ${rl.elapsedMs.toFixed(0)} ms`,
      );
      return { rate: bytes / (spanMs / 1000), lat, spans, switchStart, switchEnd };
    };
    const idle = await migrateBig(false);
    // The reference copy again, now from the files' new brick: the disk's speed drifts over a run (a VM's
    // disk more than most), so the reference is the mean rate of a copy just before and one just after.
    dropCaches();
    const bigCopyAfter = await copyRef(big, path.join(c.dirs[1], 'l'), true);
    const refRate = (bigBytes * (1 / bigCopy + 1 / bigCopyAfter)) / 2;
    notes.push(`large-file reference: plain copies with fsync ${fmtRate(bigBytes, bigCopy)} before the rebalance, ${fmtRate(bigBytes, bigCopyAfter)} after`);
    rows.push({ work: `rebalance ${big.length} files of ${REB_BIG_MB} MiB`, local: `${(refRate / 1e6).toFixed(0)} MB/s`, dhtfs: `${(idle.rate / 1e6).toFixed(0)} MB/s`, ratio: idle.rate / refRate, target: 0.7 });
    const { lat, spans, switchStart, switchEnd, rate: loadedRate } = await migrateBig(true);
    rows.push({ work: `the same, a client writing to one of them`, local: `${(refRate / 1e6).toFixed(0)} MB/s`, dhtfs: `${(loadedRate / 1e6).toFixed(0)} MB/s`, ratio: loadedRate / refRate });
    // The switch's pause: how long client writes stood still inside the switch (freeze to install). A
    // write already slow before the switch began (disk contention with the copy, as any write during the
    // migration may be) is also reported whole, as the longest write overlapping the switch.
    const overlapping = spans.filter(([a, b]) => b >= switchStart && a <= switchEnd);
    const atSwitch = overlapping.map(([a, b]) => Math.min(b, switchEnd) - Math.max(a, switchStart));
    const pause = atSwitch.length ? Math.max(...atSwitch) : 0;
    const whole = overlapping.length ? Math.max(...overlapping.map(([a, b]) => b - a)) : 0;
    lat.sort((a, b) => a - b);
    const p99 = lat[Math.floor(lat.length * 0.99)] ?? 0;
    const max = lat[lat.length - 1] ?? 0;
    rows.push({ work: `client writes' pause at the file's switch`, local: `${atSwitch.length} writes`, dhtfs: `${pause.toFixed(1)} ms`, ratio: pause < 50 ? 1 : 0, target: 1 });
    notes.push(
      `switch pause: the switch (freeze to install) took ${(switchEnd - switchStart).toFixed(1)} ms; client writes stood still in it at most ${pause.toFixed(1)} ms (target < 50 ms: ${pause < 50 ? 'met' : 'NOT met'}); the longest write overlapping it took ${whole.toFixed(1)} ms in all; over the whole migration, ${lat.length} writes: p99 ${p99.toFixed(1)} ms, longest ${max.toFixed(1)} ms (disk contention with the copy)`,
    );
    for (const v of [vol, rb]) await v.close();
  } finally {
    await c.stop();
    removeLater(base);
  }
  return notes;
}

const FUSE_MB = Number(process.env.BENCH_FUSE_MB ?? 512);
// The same small-file work as the library part (10,000 files by default).
const FUSE_FILES = Number(process.env.BENCH_FUSE_FILES ?? FILES);
const FUSE_SLICES = 4;
/** find walks a tree of FUSE_TREE x FUSE_TREE directories (BENCH_FUSE_TREE). */
const FUSE_TREE = Number(process.env.BENCH_FUSE_TREE ?? 30);
const FUSE_ROUNDS = Number(process.env.BENCH_FUSE_ROUNDS ?? 5);

/** Runs a command; resolves with its wall time in seconds. */
function runTimed(cmd: string, args: string[]): Promise<number> {
  return timed(
    () =>
      new Promise<void>((resolve, reject) => {
        const p = spawn(cmd, args, { stdio: 'ignore' });
        p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} ${args.join(' ')} exited ${code}`))));
      }),
  );
}

/** Where ../shared/peers/glusterfs/setup.sh mounts its volume and keeps its bricks (its defaults). */
const GL_MOUNT = '/mnt/glpeer';
const GL_BRICKS = '/srv/glpeer';
const GL_SCRIPTS = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'shared', 'peers', 'glusterfs');

/**
 * GlusterFS's FUSE mount of 3 bricks, side by side (../shared/peers/glusterfs/setup.sh), when glusterd is
 * installed (BENCH_GLUSTER=0 leaves it out). Torn down at the end of the run.
 */
function glusterPeer(): { dir: string | null; why: string; teardown: () => void } {
  const none = (why: string) => ({ dir: null, why, teardown: () => {} });
  if (process.env.BENCH_GLUSTER === '0') return none('left out (BENCH_GLUSTER=0)');
  if (!fs.existsSync(path.join(GL_SCRIPTS, 'setup.sh'))) return none(`no peer scripts at ${GL_SCRIPTS}`);
  if (spawnSync('sh', ['-c', 'command -v glusterd'], { stdio: 'ignore' }).status !== 0) return none('glusterd is not installed');
  // The scripts' defaults; a peer that was already up is used and left up.
  const mntDir = GL_MOUNT;
  const wasUp = spawnSync('mountpoint', ['-q', mntDir]).status === 0;
  const up = spawnSync('bash', [path.join(GL_SCRIPTS, 'setup.sh')], { encoding: 'utf8' });
  const teardown = () => void (wasUp || spawnSync('bash', [path.join(GL_SCRIPTS, 'teardown.sh')], { stdio: 'ignore' }));
  if (up.status !== 0) {
    teardown();
    return none(`setup failed: ${(up.stderr || up.stdout).trim().split('\n').pop()}`);
  }
  const dir = path.join(mntDir, `bench-${process.pid}`);
  fs.mkdirSync(dir);
  return {
    dir,
    why: `FUSE mount of 3 bricks at ${mntDir}`,
    teardown: () => {
      fs.rmSync(dir, { recursive: true, force: true });
      teardown();
    },
  };
}

/**
 * The same sequential and small-file work through a FUSE mount of 3 local bricks (`dhtfs mount`, its own
 * process) and on the local disk: dd with 1 MiB blocks (fsync at the end; reads after dropping caches; the median of BENCH_FUSE_ROUNDS rounds)
 * and 4 KiB files written by this process, 16 at a time.
 */
async function fuseBench(rows: Row[]): Promise<string[]> {
  const { fuseAvailable } = await import('../src/fuse/mount.js');
  const avail = fuseAvailable();
  if (!avail.ok) return [`FUSE rows skipped: ${avail.why}`];
  const gl = glusterPeer();
  atEnd.push(gl.teardown);
  const glNote = gl.dir ? `GlusterFS ${gl.why}` : `GlusterFS not compared: ${gl.why}`;
  // The local folder and dhtfs's bricks sit beside GlusterFS's bricks when it is compared, so that all
  // three take their inodes from the same part of the file system.
  const base = fs.mkdtempSync(path.join(gl.dir ? path.dirname(GL_BRICKS) : os.tmpdir(), 'dhtfs-fbench-'));
  removeLater(base);
  const localDir = path.join(base, 'local');
  const mnt = path.join(base, 'mnt');
  fs.mkdirSync(localDir);
  fs.mkdirSync(mnt);
  const c = await startCluster(3, { dirs: [0, 1, 2].map((i) => path.join(base, `b${i}`)) });
  const specFile = path.join(base, 'spec.json');
  fs.writeFileSync(specFile, JSON.stringify(c.spec));
  const daemon = await startMount(specFile, mnt).catch(() => null);
  try {
    if (!daemon) return ['FUSE rows skipped: the mount did not come up'];
    const label = `${FUSE_MB} MiB`;
    const ddW = (dir: string) => runTimed('dd', ['if=/dev/zero', `of=${dir}/big`, 'bs=1M', `count=${FUSE_MB}`, 'conv=fsync']);
    const ddR = (dir: string) => {
      dropCaches();
      return runTimed('dd', [`if=${dir}/big`, 'of=/dev/null', 'bs=1M']);
    };
    const small = Buffer.alloc(4096, 7);
    // The same three pieces of work on the local disk, the dhtfs mount and (if there) the GlusterFS mount.
    const targets = [localDir, mnt, ...(gl.dir ? [gl.dir] : [])];
    // FUSE_ROUNDS rounds of the sequential write and read, the targets taking turns (each round starts
    // with the next one); the median of each is reported, as for the library rows.
    const ws: number[][] = targets.map(() => []);
    const rs: number[][] = targets.map(() => []);
    for (let round = 0; round < FUSE_ROUNDS; round++) {
      const order = targets.map((_, k) => (k + round) % targets.length);
      for (const k of order) ws[k].push(await ddW(targets[k]));
      for (const k of order) rs[k].push(await ddR(targets[k]));
    }
    const w = ws.map(median);
    const r = rs.map(median);
    // The files are created in slices, the targets taking turns, so that a change in the machine's
    // speed during the run (a VM's disk, the file system's inode allocation) falls on all of them alike.
    for (const t of targets) fs.mkdirSync(path.join(t, 's'));
    const cr = targets.map(() => 0);
    for (let slice = 0; slice < FUSE_SLICES; slice++) {
      const from = Math.floor((FUSE_FILES * slice) / FUSE_SLICES);
      const to = Math.floor((FUSE_FILES * (slice + 1)) / FUSE_SLICES);
      for (let k = 0; k < targets.length; k++) {
        cr[k] += await timed(() => pool(to - from, CONCURRENCY, (i) => fsp.writeFile(path.join(targets[k], 's', `f${from + i}`), small)));
      }
    }
    // A tree of FUSE_TREE x FUSE_TREE directories walked by `find` (the median of FUSE_ROUNDS walks, the
    // targets taking turns), each walk past the mounts' 1 s caches of names and directories' attributes.
    for (const t of targets) {
      for (let i = 0; i < FUSE_TREE; i++) for (let j = 0; j < FUSE_TREE; j++) fs.mkdirSync(path.join(t, 't', `d${i}`, `e${j}`), { recursive: true });
    }
    const fw: number[][] = targets.map(() => []);
    for (let round = 0; round < FUSE_ROUNDS; round++) {
      for (const k of targets.map((_, x) => (x + round) % targets.length)) {
        await new Promise((res) => setTimeout(res, 1200));
        fw[k].push(await runTimed('find', [path.join(targets[k], 't'), '-type', 'd']));
      }
    }
    const fm = fw.map(median);
    const dirs = FUSE_TREE * FUSE_TREE + FUSE_TREE + 1;
    rows.push({ work: `FUSE: sequential write ${label} (dd, fsync; median of ${FUSE_ROUNDS})`, local: fmtRate(FUSE_MB << 20, w[0]), dhtfs: fmtRate(FUSE_MB << 20, w[1]), ratio: w[0] / w[1], target: 0.5 });
    rows.push({ work: `FUSE: sequential read ${label} (dd; median of ${FUSE_ROUNDS})`, local: fmtRate(FUSE_MB << 20, r[0]), dhtfs: fmtRate(FUSE_MB << 20, r[1]), ratio: r[0] / r[1], target: 0.5 });
    rows.push({ work: `FUSE: create ${FUSE_FILES} files of 4 KiB`, local: `${(FUSE_FILES / cr[0]).toFixed(0)} files/s`, dhtfs: `${(FUSE_FILES / cr[1]).toFixed(0)} files/s`, ratio: cr[0] / cr[1] });
    rows.push({ work: `FUSE: find over ${dirs} directories (median of ${FUSE_ROUNDS})`, local: `${(dirs / fm[0]).toFixed(0)} dirs/s`, dhtfs: `${(dirs / fm[1]).toFixed(0)} dirs/s`, ratio: fm[0] / fm[1] });
    if (gl.dir) {
      // Rows against GlusterFS's FUSE mount: "local disk" column is GlusterFS here; ratio = dhtfs / GlusterFS.
      rows.push({ work: `FUSE vs GlusterFS: sequential write`, local: fmtRate(FUSE_MB << 20, w[2]), dhtfs: fmtRate(FUSE_MB << 20, w[1]), ratio: w[2] / w[1] });
      rows.push({ work: `FUSE vs GlusterFS: sequential read`, local: fmtRate(FUSE_MB << 20, r[2]), dhtfs: fmtRate(FUSE_MB << 20, r[1]), ratio: r[2] / r[1] });
      rows.push({ work: `FUSE vs GlusterFS: create 4 KiB files`, local: `${(FUSE_FILES / cr[2]).toFixed(0)} files/s`, dhtfs: `${(FUSE_FILES / cr[1]).toFixed(0)} files/s`, ratio: cr[2] / cr[1], target: 1 });
      rows.push({ work: `FUSE vs GlusterFS: find over directories`, local: `${(dirs / fm[2]).toFixed(0)} dirs/s`, dhtfs: `${(dirs / fm[1]).toFixed(0)} dirs/s`, ratio: fm[2] / fm[1] });
    }
    return [
      `(FUSE rows: the same work on the local disk and through \`dhtfs mount\` of 3 local bricks; "FUSE vs GlusterFS" rows put GlusterFS's FUSE mount of 3 bricks in the "local disk" column, ratio = dhtfs / GlusterFS. Files are created in ${FUSE_SLICES} slices, the targets taking turns. ${glNote})`,
    ];
  } finally {
    if (daemon) {
      daemon.kill('SIGTERM');
      await new Promise((r) => daemon.once('exit', r));
    }
    await c.stop();
  }
}

const TLS_MB = Number(process.env.BENCH_TLS_MB ?? 256);
const TLS_FILES = Number(process.env.BENCH_TLS_FILES ?? 4000);
const TLS_ROUNDS = Number(process.env.BENCH_TLS_ROUNDS ?? 3);

/**
 * The cost of TLS on the brick path: the same work through the library on a volume of 3 bricks without
 * TLS and on one of 3 bricks with it (certificates of a CA made for the run), in the same run. The
 * "local disk" column holds the plain volume's figure; ratio = TLS / plain (1: no cost).
 */
async function tlsBench(rows: Row[]): Promise<string[]> {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'dhtfs-bench-tls-'));
  removeLater(base);
  const oldHome = process.env.DHTFS_HOME;
  process.env.DHTFS_HOME = path.join(base, 'home');
  const brickTls = (i: number) => path.join(base, `tls-b${i}`);
  try {
    for (let i = 0; i < 3; i++) issue('brick', `tv-client-${i}`, brickTls(i), ['127.0.0.1'], true);
    issue('client', 'bench', path.join(base, 'client'));
  } finally {
    if (oldHome === undefined) delete process.env.DHTFS_HOME;
    else process.env.DHTFS_HOME = oldHome;
  }
  const plainC = await startCluster(3, { dirs: [0, 1, 2].map((i) => path.join(base, `p${i}`)) });
  const tlsC = await startCluster(3, { dirs: [0, 1, 2].map((i) => path.join(base, `t${i}`)), options: { tls: true }, tlsDir: brickTls });
  const vols: Volume[] = [];
  try {
    vols.push(await Volume.connect(plainC.spec));
    vols.push(await Volume.connect(tlsC.spec, { tlsDir: path.join(base, 'client') }));
    const size = TLS_MB << 20;
    const data = Buffer.alloc(PIECE);
    for (let i = 0; i < PIECE; i += 4) data.writeUInt32LE((i * 2654435761) >>> 0, i);
    const buf = Buffer.alloc(PIECE);
    const w: number[][] = [[], []];
    const r: number[][] = [[], []];
    for (let round = 0; round < TLS_ROUNDS; round++) {
      // Taking turns to go first (the second meets the disk as the first left it).
      for (const k of round % 2 ? [1, 0] : [0, 1]) {
        const vol = vols[k];
        w[k].push(
          await timed(async () => {
            const h = await vol.open('/big', 'w');
            for (let off = 0; off < size; off += PIECE) await h.write(data, 0, Math.min(PIECE, size - off), off);
            await h.sync();
            await h.close();
          }),
        );
        dropCaches();
        r[k].push(
          await timed(async () => {
            const h = await vol.open('/big', 'r');
            for (let off = 0; off < size; off += PIECE) await h.read(buf, 0, PIECE, off);
            await h.close();
          }),
        );
      }
    }
    const [pw, tw, pr, tr] = [w[0], w[1], r[0], r[1]].map(median);
    rows.push({ work: `TLS: sequential write ${TLS_MB} MiB + fsync`, local: fmtRate(size, pw), dhtfs: fmtRate(size, tw), ratio: pw / tw });
    rows.push({ work: `TLS: sequential read ${TLS_MB} MiB`, local: fmtRate(size, pr), dhtfs: fmtRate(size, tr), ratio: pr / tr });
    // Creates in two halves each, plain-TLS-TLS-plain, so that neither meets the disk only second.
    const small = data.subarray(0, 4096);
    const half = Math.floor(TLS_FILES / 2);
    const cr = [0, 0];
    for (const k of [0, 1]) await vols[k].mkdir('/small');
    for (const [k, h] of [
      [0, 0],
      [1, 0],
      [1, 1],
      [0, 1],
    ] as const) {
      cr[k] += await timed(() => pool(half, CONCURRENCY, (i) => vols[k].writeFile(`/small/h${h}-f${i}`, small)));
    }
    rows.push({ work: `TLS: create ${2 * half} files of 4 KiB (${CONCURRENCY} at a time)`, local: `${((2 * half) / cr[0]).toFixed(0)} files/s`, dhtfs: `${((2 * half) / cr[1]).toFixed(0)} files/s`, ratio: cr[0] / cr[1] });
    // Connecting, again 5 times each taking turns (the first connect above also paid for loading code).
    const cn: number[][] = [[], []];
    for (let round = 0; round < 5; round++) {
      for (const k of round % 2 ? [1, 0] : [0, 1]) {
        cn[k].push(
          await timed(async () => {
            const v = await Volume.connect(k ? tlsC.spec : plainC.spec, k ? { tlsDir: path.join(base, 'client') } : {});
            await v.close();
          }),
        );
      }
    }
    const [pc, tc] = cn.map(median);
    rows.push({ work: `TLS: connect to 3 bricks and close (median of 5)`, local: `${(pc * 1000).toFixed(1)} ms`, dhtfs: `${(tc * 1000).toFixed(1)} ms`, ratio: pc / tc });
    return [
      `(TLS rows: the same work through the library on a volume of 3 local bricks without TLS ("local disk" column) and one with transport.tls on (TLS 1.3, P-256 certificates; "dhtfs" column), in the same run; ratio = TLS / plain; sequential rows: median of ${TLS_ROUNDS})`,
    ];
  } finally {
    for (const v of vols) await v.close();
    await plainC.stop();
    await tlsC.stop();
  }
}

/** BENCH_ONLY=basic,fuse,rebalance,tls,hosts runs only the named parts (all by default). */
function only(part: string): boolean {
  const want = process.env.BENCH_ONLY;
  return !want || want.split(',').includes(part);
}

async function main(): Promise<void> {
  const rows: Row[] = [];
  const notes: string[] = [];
  try {
    if (only('basic')) notes.push(...(await basicBench(rows)));
    if (!process.env.BENCH_SKIP_FUSE && only('fuse')) notes.push(...(await fuseBench(rows)));
    if (!process.env.BENCH_SKIP_REBALANCE && only('rebalance')) notes.push(...(await rebalanceBench(rows)));
    if (only('tls')) notes.push(...(await tlsBench(rows)));
    if (only('hosts')) notes.push(...(await hostsBench(rows)));
  } finally {
    for (const f of atEnd) f();
  }
  console.log(`\ndhtfs benchmark: library API over 3 local bricks vs the local disk (${os.cpus().length} cores)\n`);
  console.log(`${'work'.padEnd(48)} ${'local disk'.padStart(14)} ${'dhtfs'.padStart(14)} ${'ratio'.padStart(7)}  target`);
  for (const r of rows) {
    const verdict = r.target === undefined ? '' : `>= ${r.target} ${r.ratio >= r.target ? 'met' : 'NOT met'}`;
    console.log(`${r.work.padEnd(48)} ${r.local.padStart(14)} ${r.dhtfs.padStart(14)} ${r.ratio.toFixed(2).padStart(7)}  ${verdict}`);
  }
  for (const n of notes) console.log(n);
  console.log('(rebalance rows: "local disk" is a plain copy of the same files from the source brick\'s folder to a folder beside the bricks, each copy fsynced as a migration\'s must be)');
  if (process.env.BENCH_JSON) fs.writeFileSync(process.env.BENCH_JSON, JSON.stringify(rows, null, 2));
}

/**
 * CPU time (user + system, ms) the given processes have used so far, from /proc (0 where it is not
 * there). Rates on a machine shared with other work swing with that work; the CPU a brick spends per
 * operation swings much less, so the basic part reports both.
 */
function cpuMs(pids: (number | undefined)[]): number {
  let ms = 0;
  for (const pid of pids) {
    try {
      // Fields after the command's closing parenthesis: utime and stime are the 12th and 13th, in clock ticks (100 a second).
      const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
      ms += (Number(f[11]) + Number(f[12])) * 10;
    } catch {
      /* no /proc, or the process is gone */
    }
  }
  return ms;
}

/** Sequential write and read of one large file, small-file creation, stat and listing: library API against the local disk. */
async function basicBench(rows: Row[]): Promise<string[]> {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'dhtfs-bench-'));
  const localDir = path.join(base, 'local');
  fs.mkdirSync(localDir);
  const c = await startCluster(3, { dirs: [0, 1, 2].map((i) => path.join(base, `b${i}`)) });
  const vol = await Volume.connect(c.spec);
  const data = Buffer.alloc(PIECE);
  for (let i = 0; i < PIECE; i += 4) data.writeUInt32LE((i * 2654435761) >>> 0, i);
  const cold = dropCaches();
  try {
    // --- sequential write (fsync included) and read (caches dropped) ---------------------------------
    // ROUNDS rounds, local and dhtfs interleaved and taking turns to go first; the median of each is
    // reported (the disk under a VM is noisy, and the first round also pays for the JIT).
    const lw: number[] = [];
    const dw: number[] = [];
    const lr: number[] = [];
    const dr: number[] = [];
    const buf = Buffer.alloc(PIECE);
    // The same sequential work through either API: their handles' write, read, sync and close agree.
    type SeqHandle = Pick<fsp.FileHandle, 'sync' | 'close'> & {
      write(b: Buffer, o: number, l: number, p: number): Promise<unknown>;
      read(b: Buffer, o: number, l: number, p: number): Promise<unknown>;
    };
    const seqWrite = (open: () => Promise<SeqHandle>) =>
      timed(async () => {
        const h = await open();
        for (let off = 0; off < SIZE; off += PIECE) await h.write(data, 0, Math.min(PIECE, SIZE - off), off);
        await h.sync();
        await h.close();
      });
    const seqRead = (open: () => Promise<SeqHandle>) => {
      dropCaches();
      return timed(async () => {
        const h = await open();
        for (let off = 0; off < SIZE; off += PIECE) await h.read(buf, 0, PIECE, off);
        await h.close();
      });
    };
    const localWrite = () => seqWrite(() => fsp.open(path.join(localDir, 'big'), 'w'));
    const dhtWrite = () => seqWrite(() => vol.open('/big', 'w'));
    const localRead = () => seqRead(() => fsp.open(path.join(localDir, 'big'), 'r'));
    const dhtRead = () => seqRead(() => vol.open('/big', 'r'));
    // Odd rounds run dhtfs first: whichever goes second meets the disk as the first left it (its
    // write-back still going, the VM's disk slowing down after a burst).
    for (let round = 0; round < ROUNDS; round++) {
      const first = round % 2 === 0;
      if (first) lw.push(await localWrite());
      dw.push(await dhtWrite());
      if (!first) lw.push(await localWrite());
      if (first) lr.push(await localRead());
      dr.push(await dhtRead());
      if (!first) lr.push(await localRead());
    }
    const [localW, dhtW, localR, dhtR] = [lw, dw, lr, dr].map(median);
    const of = ` (median of ${ROUNDS})`;
    rows.push({ work: `sequential write ${SIZE >> 20} MiB + fsync${of}`, local: fmtRate(SIZE, localW), dhtfs: fmtRate(SIZE, dhtW), ratio: localW / dhtW, target: 0.6 });
    rows.push({ work: `sequential read ${SIZE >> 20} MiB${cold ? ', caches dropped' : ''}${of}`, local: fmtRate(SIZE, localR), dhtfs: fmtRate(SIZE, dhtR), ratio: localR / dhtR, target: 0.6 });
    fs.rmSync(path.join(localDir, 'big'));
    await vol.unlink('/big');

    // --- small files -------------------------------------------------------------------------------------
    const small = data.subarray(0, 4096);
    fs.mkdirSync(path.join(localDir, 'small'));
    await vol.mkdir('/small');
    const localC = await timed(() => pool(FILES, CONCURRENCY, (i) => fsp.writeFile(path.join(localDir, 'small', `f${i}`), small)));
    const pids = c.procs.map((p) => p?.pid);
    // BENCH_WARM creates first, elsewhere and untimed: the first thousands of creates also pay for compiling
    // the brick's code (TurboFan, on V8's own threads: about 30% of a brick's CPU after 1,000 creates).
    if (WARM > 0) {
      await vol.mkdir('/warm');
      await pool(WARM, CONCURRENCY, (i) => vol.writeFile(`/warm/f${i}`, small));
    }
    const cpu0 = cpuMs(pids);
    const dhtC = await timed(() => pool(FILES, CONCURRENCY, (i) => vol.writeFile(`/small/f${i}`, small)));
    const cpu1 = cpuMs(pids);
    rows.push({ work: `create ${FILES} files of 4 KiB (${CONCURRENCY} at a time)`, local: `${(FILES / localC).toFixed(0)} files/s`, dhtfs: `${(FILES / dhtC).toFixed(0)} files/s`, ratio: localC / dhtC, target: 0.2 });

    const localS = await timed(() => pool(FILES, CONCURRENCY, async (i) => void (await fsp.stat(path.join(localDir, 'small', `f${i}`)))));
    const dhtS = await timed(() => pool(FILES, CONCURRENCY, async (i) => void (await vol.stat(`/small/f${i}`))));
    const cpu2 = cpuMs(pids);
    rows.push({ work: `stat ${FILES} files`, local: `${(FILES / localS).toFixed(0)} /s`, dhtfs: `${(FILES / dhtS).toFixed(0)} /s`, ratio: localS / dhtS });

    const localL = await timed(async () => void (await fsp.readdir(path.join(localDir, 'small'))));
    const cpu3 = cpuMs(pids);
    const dhtL = await timed(async () => void (await vol.readdir('/small')));
    const cpu4 = cpuMs(pids);
    rows.push({ work: `list a directory of ${FILES}`, local: `${(localL * 1000).toFixed(0)} ms`, dhtfs: `${(dhtL * 1000).toFixed(0)} ms`, ratio: localL / dhtL });
    const us = (ms: number) => ((ms * 1000) / FILES).toFixed(0);
    return [
      `brick CPU (user + system of the 3 brick processes): ${us(cpu1 - cpu0)} us per create${WARM ? ` (after ${WARM} creates of warm-up)` : ''}, ${us(cpu2 - cpu1)} us per stat, ${cpu4 - cpu3} ms for the listing (steadier than the rates where other work shares the machine)`,
    ];
  } finally {
    await vol.close();
    await c.stop();
    removeLater(base);
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
