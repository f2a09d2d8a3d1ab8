/**
 * replace-brick ... commit force over a cluster: a (dead) brick's place given to a new, empty folder on a
 * host of the pool, in the order the one-host replace keeps (src/cli/bricks.ts): the new brick runs and
 * gets every directory with the old brick's ranges before any client meets it.
 *
 * 1. The old brick is placed nowhere (its node daemon, if it lives, stops it); then the brick's name is
 *    placed on the new node and folder, `pending`: that daemon starts it and records its port but does not
 *    announce it (node.ts).
 * 2. Every directory of the other bricks is made on it with the ranges they leave free.
 * 3. The record without `pending`, one version up, is told to every brick; directories made meanwhile are
 *    copied again.
 * A failure before 3 puts the old placement back (its node starts the old brick again, the new node
 * stops the new one).
 */
import { keys, type PlacedBrick, type VolumeRecord } from '../cluster/records.js';
import { update, type Store } from '../cluster/store.js';
import { announceWith, withCliTls } from './cluster-pki.js';
import { connectBrick, findBrick } from './bricks.js';
import { copyDirectories } from '../rebalance/replace-brick.js';
import { placeBricks, sleep, specOf, statuses, volumeRecord, withStore } from './cluster.js';

/** How long replace-brick waits for the old brick to stop and the new one to serve. */
const WAIT_MS = 30_000;

async function until(what: string, f: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  while (!(await f())) {
    if (Date.now() > deadline) throw new Error(`${what} within ${WAIT_MS / 1000} s; are the node daemons running?`);
    await sleep(200);
  }
}

function place(s: Store, name: string, brick: string, to: PlacedBrick): Promise<VolumeRecord | null> {
  return update<VolumeRecord>(s, keys.volume(name), (cur) => (cur ? { ...cur, bricks: cur.bricks.map((b) => (b.name === brick ? to : b)) } : null));
}

export async function clusterReplaceBrick(name: string, oldArg: string, newArg: string): Promise<{ brick: PlacedBrick; dirs: number }> {
  return withStore(async (s) => {
    const v0 = await volumeRecord(s, name);
    if (v0.state !== 'started') throw new Error(`volume ${name} is not started; start it first`);
    const old = findBrick(v0, oldArg);
    // A folder that is, holds or is inside any brick's on its node (the old one's too) is refused.
    const [p] = await placeBricks(s, name, [newArg], v0.bricks);
    const others = v0.bricks.filter((b) => b !== old);
    const spec = await withCliTls(s, specOf(v0, true));
    const cs = [];
    try {
      for (const b of others) {
        try {
          cs.push(await connectBrick(spec, b));
        } catch (e) {
          throw new Error(`brick ${b.name} (${b.host}:${b.port}) does not answer (${(e as Error).message}); replace-brick needs every other brick of the volume up`);
        }
      }
      const online = new Set((await s.list('presence/')).map((e) => e.key.slice('presence/'.length)));
      const nb: PlacedBrick = { name: old.name, node: p.node, host: p.host, dir: p.dir, port: 0, pending: true };
      let target: Awaited<ReturnType<typeof connectBrick>> | null = null;
      try {
        // The old brick stopped by its node (a dead node stops nothing), before anything takes its name.
        await place(s, name, old.name, { ...old, node: '' });
        if (online.has(old.node)) await until(`the old brick ${old.name} did not stop`, async () => ['stopped', undefined].includes((await statuses(s, await volumeRecord(s, name))).get(old.name)?.state));
        await place(s, name, old.name, nb);
        let port = 0;
        await until(`the new brick ${old.name} (${p.host}:${p.dir}) did not start`, async () => {
          const v = await volumeRecord(s, name);
          const st = (await statuses(s, v)).get(old.name);
          if (st?.state === 'failed' || (st?.state === 'restarting' && st.exits >= 2)) throw new Error(`the new brick ${old.name} (${p.host}:${p.dir}) did not start: ${st.reason}`);
          port = v.bricks.find((b) => b.name === old.name)?.port ?? 0;
          return st?.state === 'online' && st.node === p.node && port !== 0;
        });
        target = await connectBrick(spec, { ...nb, port });
        const r = await target.call('readdir', { path: '/', offset: 0, limit: 10 });
        if (r.entries.length > 0) throw new Error(`${p.host}:${p.dir} is not empty; a replacement brick starts from an empty folder`);
        // Every directory, with the old brick's ranges, before any client can meet the new brick.
        let dirs = await copyDirectories(cs, target);
        const v = (await update<VolumeRecord>(s, keys.volume(name), (cur) => (cur ? { ...cur, version: cur.version + 1, bricks: cur.bricks.map((b) => (b.name === old.name ? { ...b, pending: undefined } : b)) } : null)))!;
        await announceWith(s)(v);
        // Directories made while the first pass ran; a lookup would make them too, so no failure here fails the replace.
        dirs += await copyDirectories(cs, target, true).catch(() => 0);
        return { brick: v.bricks.find((b) => b.name === old.name)!, dirs };
      } catch (e) {
        // Back as it was: the old placement (its node starts it again), the new brick stopped by its node.
        await place(s, name, old.name, old).catch(() => {});
        throw e;
      } finally {
        target?.close();
      }
    } finally {
      for (const c of cs) c.close();
    }
  });
}
