/**
 * Moving a name with no data of its own (a symlink, a FIFO, a socket, a device node) to its hashed brick, as GlusterFS's
 * migrate_special_files does: there is nothing to copy but the name, its target (a symlink's) and its
 * attributes, and no fd can be open on it through a brick, so no lease or commit is needed. The copy is
 * made on dst (same gfid, owner, mode, times, user xattrs: migSpecial), then src's copy is removed if it
 * is still that file, unchanged (migDropSpecial, by gfid and ctime).
 *
 * What a client sees meanwhile: a lookup goes to the hashed brick first, so from the moment dst's copy is
 * there it finds that one; before, it finds src's (directly, or through a linkto on dst, which dst's copy
 * replaces by rename). A listing merges the bricks by name, so the name is listed once while both copies
 * exist, and at every instant at least one exists. A change of src's copy after it was read (chmod,
 * chown, utimes) shows in its ctime: the attributes are copied again before src's copy goes. A name
 * unlinked or renamed on src meanwhile leaves dst's copy without a source: it is removed again (by gfid).
 */
import type { ArgsOf } from '../wire/ops.js';
import { codeOf, bestEffort, nullOnFailure } from '../common/errors.js';
import type { DhtClient } from '../dht/client.js';
import type { Attr } from '../wire/types.js';
import { S_IFLNK, S_IFMT } from '../storage/storage.js';

/** How many times a special file that changed while it was read is read again before it is skipped this pass. */
const REREAD_RETRIES = 5;

export type SpecialOutcome = { result: 'migrated' } | { result: 'gone' } | { result: 'skipped'; reason: string };

async function userXattrs(c: DhtClient, brick: string, path: string): Promise<[string, Uint8Array][]> {
  // Linux allows user.* xattrs on regular files and directories only: usually none here.
  const names = await c
    .sv(brick)
    .call('listxattr', { path })
    .then(
      (r) => r.names,
      () => [] as string[],
    );
  const out: [string, Uint8Array][] = [];
  for (const name of names) {
    const v = await c.sv(brick).call('getxattr', { path, name }).catch(nullOnFailure('getxattr', c.log));
    if (v) out.push([name, v.value]);
  }
  return out;
}

/** Moves the special file at `path` from brick `from` to brick `to` (its hashed brick). */
export async function migrateSpecial(c: DhtClient, path: string, from: string, to: string, links?: string[]): Promise<SpecialOutcome> {
  const read = async (tries = 0): Promise<{ a: Attr; args: ArgsOf<'migSpecial'> } | null> => {
    const a = await c
      .sv(from)
      .call('lookup', { path })
      .catch((e) => {
        if (codeOf(e) === 'ENOENT') return null;
        throw e;
      });
    if (!a || !a.gfid) return null;
    const target = (a.mode & S_IFMT) === S_IFLNK ? (await c.sv(from).call('readlink', { path })).target : undefined;
    const xattrs = await userXattrs(c, from, path);
    // The ctime read last: anything changed after it shows as a newer ctime.
    const again = await c.sv(from).call('lookup', { path }).catch(nullOnFailure('lookup', c.log));
    // (Changed while it was read: read again. migDropSpecial checks the ctime in the end anyway.)
    if ((!again || again.gfid !== a.gfid || again.ctime[0] !== a.ctime[0] || again.ctime[1] !== a.ctime[1]) && tries < REREAD_RETRIES) return read(tries + 1);
    return { a, args: { path, gfid: a.gfid, mode: a.mode, rdev: a.rdev, target, uid: a.uid, gid: a.gid, atime: a.atime, mtime: a.mtime, xattrs, links: a.nlink > 1 ? links : undefined } };
  };
  let r = await read();
  if (!r) return { result: 'gone' };
  if (r.a.nlink > 1 && links?.length !== r.a.nlink) return { result: 'skipped', reason: `${r.a.nlink} names (hard links)` };
  const names = r.a.nlink > 1 ? links! : [path];
  const gfid = r.a.gfid!;
  try {
    await c.sv(to).call('migSpecial', r.args);
  } catch (e) {
    if (codeOf(e) === 'EEXIST') return { result: 'skipped', reason: `${to} holds another file at the name` };
    throw e;
  }
  for (let i = 0; ; i++) {
    try {
      await c.sv(from).call('migDropSpecial', { path, gfid, ctime: r.a.ctime, links: names.length > 1 ? names : undefined });
      // The other names' hashed bricks: a linkto to `to` (they had one to `from`; a lookup would repair it).
      for (const name of names) {
        const hashed = await c.hashedOf(name).catch(nullOnFailure('hashedOf', c.log));
        if (!hashed || hashed === to) continue;
        const there = await c.sv(hashed).call('lookup', { path: name }).catch(nullOnFailure('lookup', c.log));
        if ((there && (there.linkto === undefined || there.gfid !== gfid)) || there?.linkto === to) continue;
        await c.sv(hashed).call('mklinkto', { path: name, gfid, target: to, uid: r.a.uid, gid: r.a.gid, keepTimes: true, replace: !!there }).catch(bestEffort('mklinkto', c.log));
      }
      return { result: 'migrated' };
    } catch (e) {
      const code = codeOf(e);
      if (code === 'EAGAIN') {
        if (i >= 5) return { result: 'skipped', reason: 'changed again and again while it moved' };
        // Changed after it was read: copy the attributes again, then try again.
        r = await read();
        if (r && r.a.gfid === gfid) {
          await c.sv(to).call('migSpecial', r.args);
          continue;
        }
      } else if (code !== 'ENOENT' && code !== 'ESTALE') throw e;
      // Unlinked or renamed on src meanwhile: dst's copy has no source; it goes again (if still ours).
      for (const name of names) {
        await c.sv(to).call('unlink', { path: name, gfid, keepTimes: true }).catch(bestEffort('unlink', c.log));
      }
      return { result: 'gone' };
    }
  }
}
