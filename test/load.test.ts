/**
 * Rebalance under load, on real bricks: small files and big files, one brick added, a rebalance while
 * writers append checksummed records to the big files and readers (fds opened before the rebalance)
 * verify acknowledged records. Zero lost, stale or torn records.
 *
 * Default scale keeps `npm test` short; DHTFS_SOAK=1 (npm run soak) runs the full size: 10,000 files of
 * 4 KiB and four files of 256 MiB.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Volume, type FileHandle } from '../src/api/volume.js';
import { Rebalancer, type Checkpoint } from '../src/rebalance/rebalancer.js';
import { startCluster } from './helpers/cluster.js';
import { scanBrick } from './helpers/disk.js';

const SOAK = process.env.DHTFS_SOAK === '1';
const SMALL = SOAK ? 10_000 : 1_500;
const SMALL_SIZE = SOAK ? 4096 : 1024;
const BIG = 4;
const BIG_SIZE = SOAK ? 256 * 1024 * 1024 : 8 * 1024 * 1024;
const REC = 64;

function record(file: number, seq: number): Buffer {
  const body = `f${file} seq ${String(seq).padStart(9, '0')} `;
  const sum = createHash('sha256')
    .update(body)
    .digest('hex')
    .slice(0, REC - body.length - 1);
  return Buffer.from(`${body}${sum}\n`);
}

function checkRecord(b: Buffer, file: number, seq: number): string | null {
  if (b.equals(record(file, seq))) return null;
  const s = b.toString('latin1');
  if (/^\0+$/.test(s)) return 'stale (zeros)';
  return `torn or wrong: ${JSON.stringify(s)}`;
}

test(`rebalance under load: ${SMALL} small files, ${BIG} files of ${BIG_SIZE >> 20} MiB, writers and readers`, { timeout: SOAK ? 3_600_000 : 600_000 }, async () => {
  const c = await startCluster(3);
  try {
    const setup = await Volume.connect(c.spec);
    await setup.mkdir('/small');
    await setup.mkdir('/big');
    const smallData = (i: number) =>
      Buffer.from(
        createHash('sha256')
          .update(`small ${i}`)
          .digest('hex')
          .repeat(SMALL_SIZE / 64),
      );
    let next = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (next < SMALL) {
          const i = next++;
          await setup.writeFile(`/small/s${i}`, smallData(i));
        }
      }),
    );
    const chunk = Buffer.alloc(4 * 1024 * 1024);
    for (let f = 0; f < BIG; f++) {
      const h = await setup.open(`/big/b${f}`, 'w');
      for (let off = 0; off < BIG_SIZE; off += chunk.length) await h.write(chunk, 0, Math.min(chunk.length, BIG_SIZE - off), off);
      await h.close();
    }

    // Writers and readers, each with its own connection, fds opened before the rebalance.
    const clients = await Promise.all(Array.from({ length: BIG }, () => Volume.connect(c.spec)));
    const readers = await Promise.all(Array.from({ length: BIG }, () => Volume.connect(c.spec)));
    const acked: number[] = new Array(BIG).fill(0); // records acknowledged per file
    const problems: string[] = [];
    let stop = false;
    let reads = 0;
    const wfds: FileHandle[] = await Promise.all(clients.map((v, f) => v.open(`/big/b${f}`, 'r+')));
    const rfds: FileHandle[] = await Promise.all(readers.map((v, f) => v.open(`/big/b${f}`, 'r')));
    const writers = wfds.map(async (h, f) => {
      for (let seq = 0; !stop; seq++) {
        await h.write(record(f, seq), 0, REC, BIG_SIZE + seq * REC);
        if (seq % 8 === 7) await h.sync();
        acked[f] = seq + 1;
      }
    });
    const checkers = rfds.map(async (h, f) => {
      const b = Buffer.alloc(REC);
      while (!stop) {
        const n = acked[f];
        if (n === 0) {
          await new Promise((r) => setTimeout(r, 1));
          continue;
        }
        // The newest acknowledged record and a random older one.
        for (const seq of [n - 1, Math.floor(Math.random() * n)]) {
          await h.read(b, 0, REC, BIG_SIZE + seq * REC);
          const bad = checkRecord(b, f, seq);
          if (bad) problems.push(`file ${f} record ${seq}: ${bad}`);
          reads++;
        }
      }
    });

    // One brick added, then a rebalance while all that goes on.
    await c.addBrick();
    await c.pushTopology();
    const rbVol = await Volume.connect(c.spec);
    let saved: Checkpoint | null = null;
    const result = await new Rebalancer(rbVol.client, {
      store: { load: () => saved, save: (cp) => (saved = structuredClone(cp)) },
      throttle: 2,
    }).run();
    stop = true;
    await Promise.all([...writers, ...checkers]);
    assert.equal(result.state, 'completed', result.error);
    assert.equal(result.counters.failed, 0);
    assert.ok(result.counters.migrated > SMALL / 8, `migrated ${result.counters.migrated}`);
    assert.deepEqual(problems.slice(0, 10), [], `${problems.length} stale or torn reads`);
    assert.ok(reads > 100, `readers verified ${reads} records`);

    // Nothing lost: every acknowledged record, every small file, through a new client.
    const check = await Volume.connect(c.spec);
    for (let f = 0; f < BIG; f++) {
      const st = await check.stat(`/big/b${f}`);
      assert.equal(st.size, BIG_SIZE + acked[f] * REC, `file ${f} size`);
      const h = await check.open(`/big/b${f}`, 'r');
      const tail = Buffer.alloc(acked[f] * REC);
      await h.read(tail, 0, tail.length, BIG_SIZE);
      for (let seq = 0; seq < acked[f]; seq++) {
        const bad = checkRecord(tail.subarray(seq * REC, (seq + 1) * REC), f, seq);
        assert.equal(bad, null, `file ${f} record ${seq} lost or damaged`);
      }
      await h.close();
    }
    for (let i = 0; i < SMALL; i++) assert.ok((await check.readFile(`/small/s${i}`)).equals(smallData(i)), `small file ${i}`);
    // One data file per name, no linkto, no copies.
    const seen = new Set<string>();
    for (const d of c.dirs) {
      for (const [p, o] of scanBrick(d)) {
        if ((o.mode & 0o170000) !== 0o100000) continue;
        assert.equal(o.linkto, null, `linkto left: ${p}`);
        assert.ok(!seen.has(p), `${p} twice`);
        seen.add(p);
      }
    }
    assert.equal(seen.size, SMALL + BIG);
    console.log(`load: ${result.counters.migrated} files migrated (${(result.counters.bytes / 2 ** 20).toFixed(0)} MiB) while ${acked.reduce((a, b) => a + b, 0)} records were written and ${reads} verified`);
    for (const h of [...wfds, ...rfds]) await h.close();
    for (const v of [setup, rbVol, check, ...clients, ...readers]) await v.close();
  } finally {
    await c.stop();
  }
});
