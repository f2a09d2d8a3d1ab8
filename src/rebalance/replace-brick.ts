/**
 * replace-brick's work on the bricks (`dhtfs volume replace-brick`, src/cli/bricks.ts; the simulator's
 * operator, src/sim/operator.ts): a new, empty brick that takes a brick's place (its name) gets every
 * directory the other bricks hold, each with the ranges they leave free (its slot's), before and again
 * after the topology names it.
 */
import { needGfid } from '../common/gfid.js';
import { ignoreCodes } from '../common/errors.js';
import type { RpcClient } from '../wire/rpc.js';
import type { Attr } from '../wire/types.js';
import { COMMIT_HASH_INVALID, RING_MAX, isEmptyRange, type LayoutRange } from '../dht/layout.js';

/**
 * The ranges of a directory that no other brick has (the replaced brick's: the hole in the others'
 * layout), with the others' type and no valid commit hash: the new brick has none of the linkto files
 * the old one held for files on other bricks, so a name's absence there proves nothing, and with the
 * directory's layout not committed (its ranges' commits differ) clients look a missed name up on every
 * brick (lookup-optimize off for it) until a rebalance commits the layout again. With the others'
 * commit, such files were listed but not found (the simulator's replace-brick: 16 of the 70 seeds of
 * test/sim.test.ts's names workload, seed 4 the first).
 */
function holesOf(others: LayoutRange[]): LayoutRange[] {
  const rs = others.filter((r) => !isEmptyRange(r)).sort((a, b) => a.start - b.start);
  const commit = COMMIT_HASH_INVALID;
  const type = rs[0]?.type ?? 0;
  const out: LayoutRange[] = [];
  let expect = 0;
  for (const r of rs) {
    if (r.start > expect) out.push({ commit, type, start: expect, stop: r.start - 1 });
    expect = Math.max(expect, r.stop + 1);
  }
  if (rs.length > 0 && expect <= RING_MAX) out.push({ commit, type, start: expect, stop: RING_MAX });
  return out;
}

/**
 * Gives `target` (a new, empty brick) every directory the other bricks hold, each with the ranges the
 * others leave free (its slot's), the same gfid, owner, mode and times; and the root's commit hash.
 * Returns how many directories it made.
 */
export async function copyDirectories(others: RpcClient[], target: RpcClient, again = false): Promise<number> {
  if (!again) await copyRootCommit(others, target);
  let made = 0;
  const walk = async (dir: string): Promise<void> => {
    const attrs = (await Promise.all(others.map((c) => c.call('lookup', { path: dir }).catch(() => null)))).filter((a): a is Attr => a !== null && (a.mode & 0o170000) === 0o040000);
    if (attrs.length === 0) return;
    const holes = holesOf(attrs.flatMap((a) => a.layout ?? []));
    const layout = holes.length > 0 ? holes : null;
    if (dir === '/') {
      if (!again) await target.call('setLayout', { path: '/', layout });
    } else {
      const a = attrs[0];
      try {
        await target.call('mkdir', { path: dir, mode: a.mode & 0o7777, gfid: needGfid(a.gfid, dir), uid: a.uid, gid: a.gid, layout, atime: a.atime, mtime: a.mtime, keepTimes: true });
        made++;
      } catch (e) {
        ignoreCodes(e, 'EEXIST');
        // Again, once clients use the brick: a directory it has is theirs to lay out.
        if (!again) await target.call('setLayout', { path: dir, layout });
      }
    }
    const subdirs = new Set<string>();
    for (const c of others) {
      try {
        for (let offset = 0; ;) {
          const r = await c.call('readdir', { path: dir, offset, limit: 1000 });
          for (const e of r.entries) if ((e.attr.mode & 0o170000) === 0o040000) subdirs.add(e.name);
          offset += r.entries.length;
          if (r.eof || r.entries.length === 0) break;
        }
      } catch (e) {
        ignoreCodes(e, 'ENOENT');
      }
    }
    for (const n of [...subdirs].sort()) await walk(dir === '/' ? `/${n}` : `${dir}/${n}`);
  };
  await walk('/');
  return made;
}

async function copyRootCommit(others: RpcClient[], target: RpcClient): Promise<void> {
  const roots = await Promise.all(others.map((c) => c.call('rootInfo', {}).catch(() => null)));
  const commitHash = roots.find((r) => r && r.commitHash !== null)?.commitHash;
  if (commitHash !== undefined && commitHash !== null) await target.call('setCommitHash', { value: commitHash });
  // The volume root's mode and owner, as the other bricks keep them.
  const root = (await Promise.all(others.map((c) => c.call('lookup', { path: '/' }).catch(() => null)))).find((a) => a !== null);
  if (root) await target.call('setattr', { path: '/', mode: root.mode & 0o7777, uid: root.uid, gid: root.gid });
}
