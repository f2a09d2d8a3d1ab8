/**
 * The client side of test/cluster-netns.test.ts, run inside a host of its own (test/helpers/netns.ts):
 * the volume's spec comes in DHTFS_TEST_SPEC; it prints one JSON line per step and waits for a line on
 * stdin before the next, so that the test can cut and restore a host's link in between.
 */
import { createInterface } from 'node:readline';
import { Volume, type FileHandle } from '../../src/api/volume.js';
import type { VolumeSpec } from '../../src/dht/spec.js';
import { storeTopology } from './netns.js';

// `node --test dist/test/` runs every file under it, this one too: without a spec it is not a client.
if (!process.env.DHTFS_TEST_SPEC) process.exit(0);
const spec = JSON.parse(process.env.DHTFS_TEST_SPEC) as VolumeSpec;
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const next = async () => (await lines.next()).value as string;
const say = (o: unknown) => process.stdout.write(JSON.stringify(o) + '\n');
const FILES = 48;

async function readAll(vol: Volume, handles: FileHandle[]) {
  const out: { path: string; brick: string; byPath: string; byFd: string }[] = [];
  await Promise.all(
    handles.map(async (h, i) => {
      const p = `/f${i}`;
      const brick = (await vol.client.locate(p).catch(() => null))?.cached ?? '?';
      const byPath = await vol.readFile(p, 'utf8').then(
        (s) => (s === `file ${i}\n` ? 'ok' : `wrong: ${s}`),
        (e) => (e as { code?: string }).code ?? String(e),
      );
      const buf = Buffer.alloc(64);
      const byFd = await h.read(buf, 0, 64, 0).then(
        (r) => (buf.subarray(0, r.bytesRead).toString() === `file ${i}\n` ? 'ok' : 'wrong'),
        (e) => (e as { code?: string }).code ?? String(e),
      );
      out.push({ path: p, brick, byPath, byFd });
    }),
  );
  return out.sort((a, b) => a.path.localeCompare(b.path));
}

async function main() {
  // The bricks learn the volume's topology from the admin, as `volume start` does.
  await storeTopology(spec);
  const vol = await Volume.connect(spec);
  const handles: FileHandle[] = [];
  for (let i = 0; i < FILES; i++) {
    await vol.writeFile(`/f${i}`, `file ${i}\n`);
    handles.push(await vol.open(`/f${i}`, 'r'));
  }
  const where: Record<string, string> = {};
  for (let i = 0; i < FILES; i++) where[`/f${i}`] = (await vol.client.locate(`/f${i}`)).cached;
  say({ step: 'filled', where });
  await next(); // the test cut a host's link
  const t0 = Date.now();
  say({ step: 'cut', reads: await readAll(vol, handles), ms: Date.now() - t0 });
  await next(); // the link is back
  // Calls to the brick come back once it answers again (the client redials a second after a failure).
  let reads = await readAll(vol, handles);
  for (let i = 0; i < 30 && reads.some((r) => r.byPath !== 'ok' || r.byFd !== 'ok'); i++) {
    await new Promise((r) => setTimeout(r, 500));
    reads = await readAll(vol, handles);
  }
  say({ step: 'restored', reads });
  for (const h of handles) await h.close().catch(() => {});
  await vol.close();
}

main().catch((e) => {
  say({ step: 'error', error: String((e as Error).stack ?? e) });
  process.exit(1);
});
