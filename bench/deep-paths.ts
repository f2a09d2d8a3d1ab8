/**
 * `node dist/bench/deep-paths.js [DEPTHS]` (default 1,120,300): the cost of deep paths (issue 20 item 11).
 * For each depth, on a volume of two brick processes: the time to make the directory chain (mkdir -p,
 * one request per level), then to create and stat a file at its bottom (N of them, N=200 by default),
 * and a fresh client's stat of one of them. A brick resolves a path in one openat2 beneath its folder;
 * it used to lstat every component of every request's path (300 deep, measured back to back on the
 * development machine: 16.0 ms per create+stat before, 1.2 ms after; mkdir -p 4.1 s before, 1.0 s after).
 */
import { Volume } from '../src/api/volume.js';
import { startCluster } from '../test/helpers/cluster.js';

const depths = (process.argv[2] ?? '1,120,300').split(',').map(Number);
const N = Number(process.env.N ?? 200);
const ms = (t: bigint) => Number(process.hrtime.bigint() - t) / 1e6;

const c = await startCluster(2);
try {
  const vol = await Volume.connect(c.spec);
  try {
    for (const depth of depths) {
      const dir = `/t${depth}/` + Array(depth).fill('d').join('/');
      let t = process.hrtime.bigint();
      await vol.mkdir(dir, { recursive: true });
      const mk = ms(t);
      t = process.hrtime.bigint();
      for (let i = 0; i < N; i++) {
        await vol.writeFile(`${dir}/f${i}`, 'x');
        await vol.stat(`${dir}/f${i}`);
      }
      const per = ms(t) / N;
      const fresh = await Volume.connect(c.spec);
      t = process.hrtime.bigint();
      await fresh.stat(`${dir}/f0`);
      const cold = ms(t);
      await fresh.close();
      console.log(`depth ${depth}: mkdir -p ${mk.toFixed(0)} ms; create+stat at the bottom ${per.toFixed(2)} ms each (${N}); a fresh client's stat ${cold.toFixed(1)} ms`);
    }
  } finally {
    await vol.close();
  }
} finally {
  await c.stop();
}
