/**
 * npm run bench: dhtfs through the library API over 3 local brick processes, against the same work done
 * directly on the local disk in the same run. Prints each figure and its ratio.
 *
 *   BENCH_SIZE_MB (default 1024)   size of the sequential file
 *   BENCH_FILES   (default 10000)  number of 4 KiB files
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Volume } from '../src/api/volume.js';
import { startCluster } from '../test/helpers/cluster.js';

const SIZE = Number(process.env.BENCH_SIZE_MB ?? 1024) * 1024 * 1024;
const FILES = Number(process.env.BENCH_FILES ?? 10000);
const PIECE = 8 * 1024 * 1024;
const CONCURRENCY = 16;

function dropCaches(): boolean {
  try {
    fs.writeFileSync('/proc/sys/vm/drop_caches', '3');
    return true;
  } catch {
    return false;
  }
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

async function main(): Promise<void> {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'dhtfs-bench-'));
  const localDir = path.join(base, 'local');
  fs.mkdirSync(localDir);
  const c = await startCluster(3, { dirs: [0, 1, 2].map((i) => path.join(base, `b${i}`)) });
  const vol = await Volume.connect(c.spec);
  const rows: Row[] = [];
  const data = Buffer.alloc(PIECE);
  for (let i = 0; i < PIECE; i += 4) data.writeUInt32LE((i * 2654435761) >>> 0, i);
  const cold = dropCaches();
  try {
    // --- sequential write, fsync included --------------------------------------------------------
    const localW = await timed(async () => {
      const h = await fsp.open(path.join(localDir, 'big'), 'w');
      for (let off = 0; off < SIZE; off += PIECE) await h.write(data, 0, Math.min(PIECE, SIZE - off), off);
      await h.sync();
      await h.close();
    });
    const dhtW = await timed(async () => {
      const h = await vol.open('/big', 'w');
      for (let off = 0; off < SIZE; off += PIECE) await h.write(data, 0, Math.min(PIECE, SIZE - off), off);
      await h.sync();
      await h.close();
    });
    rows.push({ work: `sequential write ${SIZE >> 20} MiB + fsync`, local: fmtRate(SIZE, localW), dhtfs: fmtRate(SIZE, dhtW), ratio: localW / dhtW, target: 0.6 });

    // --- sequential read ------------------------------------------------------------------------------
    const buf = Buffer.alloc(PIECE);
    dropCaches();
    const localR = await timed(async () => {
      const h = await fsp.open(path.join(localDir, 'big'), 'r');
      for (let off = 0; off < SIZE; off += PIECE) await h.read(buf, 0, PIECE, off);
      await h.close();
    });
    dropCaches();
    const dhtR = await timed(async () => {
      const h = await vol.open('/big', 'r');
      for (let off = 0; off < SIZE; off += PIECE) await h.read(buf, 0, PIECE, off);
      await h.close();
    });
    rows.push({ work: `sequential read ${SIZE >> 20} MiB${cold ? ' (caches dropped)' : ''}`, local: fmtRate(SIZE, localR), dhtfs: fmtRate(SIZE, dhtR), ratio: localR / dhtR, target: 0.6 });
    fs.rmSync(path.join(localDir, 'big'));
    await vol.unlink('/big');

    // --- small files -------------------------------------------------------------------------------------
    const small = data.subarray(0, 4096);
    fs.mkdirSync(path.join(localDir, 'small'));
    await vol.mkdir('/small');
    const localC = await timed(() => pool(FILES, CONCURRENCY, (i) => fsp.writeFile(path.join(localDir, 'small', `f${i}`), small)));
    const dhtC = await timed(() => pool(FILES, CONCURRENCY, (i) => vol.writeFile(`/small/f${i}`, small)));
    rows.push({ work: `create ${FILES} files of 4 KiB (${CONCURRENCY} at a time)`, local: `${(FILES / localC).toFixed(0)} files/s`, dhtfs: `${(FILES / dhtC).toFixed(0)} files/s`, ratio: localC / dhtC, target: 0.2 });

    const localS = await timed(() => pool(FILES, CONCURRENCY, async (i) => void (await fsp.stat(path.join(localDir, 'small', `f${i}`)))));
    const dhtS = await timed(() => pool(FILES, CONCURRENCY, async (i) => void (await vol.stat(`/small/f${i}`))));
    rows.push({ work: `stat ${FILES} files`, local: `${(FILES / localS).toFixed(0)} /s`, dhtfs: `${(FILES / dhtS).toFixed(0)} /s`, ratio: localS / dhtS });

    const localL = await timed(async () => void (await fsp.readdir(path.join(localDir, 'small'))));
    const dhtL = await timed(async () => void (await vol.readdir('/small')));
    rows.push({ work: `list a directory of ${FILES}`, local: `${(localL * 1000).toFixed(0)} ms`, dhtfs: `${(dhtL * 1000).toFixed(0)} ms`, ratio: localL / dhtL });
  } finally {
    await vol.close();
    await c.stop();
    fs.rmSync(base, { recursive: true, force: true });
  }
  console.log(`\ndhtfs benchmark: library API over 3 local bricks vs the local disk (${os.cpus().length} cores)\n`);
  console.log(`${'work'.padEnd(48)} ${'local disk'.padStart(14)} ${'dhtfs'.padStart(14)} ${'ratio'.padStart(7)}  target`);
  for (const r of rows) {
    const verdict = r.target === undefined ? '' : `>= ${r.target} ${r.ratio >= r.target ? 'met' : 'NOT met'}`;
    console.log(`${r.work.padEnd(48)} ${r.local.padStart(14)} ${r.dhtfs.padStart(14)} ${r.ratio.toFixed(2).padStart(7)}  ${verdict}`);
  }
  if (process.env.BENCH_JSON) fs.writeFileSync(process.env.BENCH_JSON, JSON.stringify(rows, null, 2));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
