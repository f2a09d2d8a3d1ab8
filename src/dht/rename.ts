/**
 * The rename protocol of the DHT client: a file's new name is made as a second name that says which
 * rename it belongs to (link `intent`), the old name goes, and whoever meets an unfinished rename (the
 * renamer taken up again, or another client's lookup: settleRename) finishes or undoes it. Directories
 * rename on every brick; RENAME_EXCHANGE where one brick can swap both names at once. Functions of a
 * DhtClient.
 */
import { ELAYOUT, EMOVED, FsError, codeOf, ignoreCodes, bestEffort, infoOf } from '../common/errors.js';
import { needGfid } from '../common/gfid.js';
import { DhtClient, RACE_RETRIES, movedAway, type Located } from './client.js';
import { normPath, splitPath } from './paths.js';
import { RECONNECT_MS } from './subvol.js';

/** How often a rename cut off by a lost brick is taken up again before it reports the failure. */
const RENAME_RESUMES = 12;

/**
 * Ends a rename its renamer left unfinished (cut off between giving the data file its new name, which
 * marked the file with the rename, and taking the old name away): under the new name's entry lock, which
 * the renamer holds through those steps, the rename is done if the new name's hashed brick already
 * leads to the file (the switch happened: the old name and its linkto go) and undone otherwise (the new
 * name goes). Either way nothing is lost and one name is left. Returns false if it could not get that
 * far (a brick away leaves the file as it is, to be settled by the next one who meets it), true when the
 * file may have changed (settled here or by someone else meanwhile) and is to be looked up again.
 */
export async function settleRename(c: DhtClient, loc: Located): Promise<boolean> {
  const r = loc.attr.renaming;
  const gfid = loc.attr.gfid;
  if (!r || !gfid || loc.isDir) return false;
  try {
    const { parent, name } = splitPath(normPath(r.to));
    c.dirs.drop(parent); // (the layout as the bricks have it now)
    const d = await c.dir(parent);
    const toHashed = c.hashedBrick(d, name);
    return await c.entryLock(toHashed, parent, name, async () => {
      const data = c.sv(loc.cached);
      const absent = (e: unknown) => (codeOf(e) === 'ENOENT' ? null : Promise.reject(e));
      // Still unfinished? (The renamer may have finished, or someone else settled it, meanwhile: the
      // caller looks again.) Each name is asked for this file: the new name may hold another file by now
      // (a later rename over it), while the old one still has this file and its mark, which then stayed
      // for ever (the simulator, --errors seed 47).
      const marked = async (p: string) => {
        const a = await data.call('lookup', { path: p }).catch(absent);
        return a && a.gfid === gfid && a.renaming?.from === r.from && a.renaming.to === r.to ? a : null;
      };
      if (!(await marked(r.to)) && !(await marked(r.from))) return true;
      const switched = await nameLeadsTo(c, r.to, gfid, false, toHashed);
      const drop = switched ? r.from : r.to;
      await data.call('unlink', { path: drop, gfid, ifOtherNames: true, clearIntent: true }).catch(async (e) => {
        // The name is not (or no longer) the file's: only the mark is left.
        ignoreCodes(e, 'ENOENT', 'ESTALE', 'EBUSY');
        await data.call('renameSettled', { gfid });
      });
      if (switched) {
        // As the renamer would have: the old name's linkto and the data of the file the rename replaced.
        const fromHashed = c.hashedBrick(await c.dir(splitPath(normPath(r.from)).parent), splitPath(normPath(r.from)).name);
        if (fromHashed !== loc.cached) await c.sv(fromHashed).call('unlink', { path: r.from, onlyIfLinkto: true, gfid }).catch(bestEffort('unlink', c.log));
        await dropReplaced(c, r.to, { at: r.replaced ? { brick: r.replaced.brick, gfid: r.replaced.gfid } : null });
      }
      c.log('info', `${switched ? 'finished' : 'undid'} an interrupted rename of ${r.from} to ${r.to}`);
      return true;
    });
  } catch (e) {
    c.log('warn', `leaving the interrupted rename of ${r.from} to ${r.to} for later: ${(e as Error).message}`);
    return false;
  }
}

/**
 * Whether a rename of the file `gfid` to `path` got as far as its switch: some brick has a linkto at
 * `path` to the file (the switch makes one, and only the switch; it may be on a brick that hashed the
 * name before a layout change), or the name's hashed brick has the file's data under it (renamed in
 * place). Asked of every brick: a lookup by name may find the replaced file's data first, or miss a
 * linkto made under the layout before. With `anyData` (the old name is gone), the file's data under
 * the name on any brick counts too: lookups find it there. `hashed`: the name's hashed brick by the
 * layout as the bricks have it now, if the caller has just read it.
 */
export async function nameLeadsTo(c: DhtClient, path: string, gfid: string, anyData = false, hashed?: string): Promise<boolean> {
  if (hashed === undefined) {
    const { parent, name } = splitPath(normPath(path));
    c.dirs.drop(parent); // (the layout as the bricks have it now)
    hashed = c.hashedBrick(await c.dir(parent), name);
  }
  const found = await Promise.all(
    c.names.map((b) =>
      c
        .sv(b)
        .call('lookup', { path })
        .then(
          (a) => ({ b, a }),
          (e) => (codeOf(e) === 'ENOENT' ? null : Promise.reject(e)),
        ),
    ),
  );
  return found.some((f) => f !== null && f.a.gfid === gfid && (anyData || f.a.linkto !== undefined || f.b === hashed));
}

/**
 * rename(2) with GlusterFS's scheme: data never moves. If the new name hashes to the data's brick, the
 * data file is renamed in place. Otherwise the data file gets the new name by a hard link, then the new
 * name's hashed brick gets a linkto pointing at the data, made aside and renamed over whatever held the
 * name there, so the new name never goes missing: readers see the old file until that step and the new
 * one after it; then the old name goes. Then the replaced file's data (on a third brick) and the old
 * name's linkto are cleaned up. A rename cut off by a lost brick is taken up again when it is back.
 */
export async function rename(c: DhtClient, from: string, to: string): Promise<void> {
  from = normPath(from);
  to = normPath(to);
  if (from === '/' || to === '/') throw new FsError('EBUSY', 'cannot rename /');
  if (from === to) return;
  if (to.startsWith(from + '/')) throw new FsError('EINVAL', `cannot move ${from} into itself`);
  // Caches of the names in a directory renamed, or replaced, go; the new name may exist from now on.
  c.neg.gone(from);
  c.neg.gone(to);
  c.mayExist(to);
  // The gfid of the file an interrupted attempt was renaming: the next attempt finishes its work.
  let resume: string | null = null;
  let moves = 0;
  const left: ReplacedFile = { at: null };
  for (let attempt = 0; ; attempt++) {
    try {
      return await renameOnce(c, from, to, resume, left);
    } catch (e) {
      // The data file was not where the lookup found it (a migration moved it, or another client settled
      // this rename meanwhile, see settleRename): look it up again, as a rename that may have begun.
      if (e instanceof SourceMoved && ++moves <= 3) {
        resume = e.gfid ?? resume;
        continue;
      }
      // A brick went away between two steps: wait for it and carry on from where the rename stopped, so
      // that a broken connection leaves no half-renamed file behind while this client lives.
      if (e instanceof Interrupted && attempt < RENAME_RESUMES) {
        resume = e.gfid;
        await c.clock.sleep(RECONNECT_MS / 4);
        continue;
      }
      throw e instanceof SourceMoved || e instanceof Interrupted ? e.original : e;
    }
  }
}

/**
 * renameat2(2) with RENAME_EXCHANGE: `from` and `to` swap their files at once. Done where it can be
 * atomic: both names' files live on one brick under those names (each name's hashed brick holds its
 * data: no linkto), which swaps them with one renameat2, under both names' entry locks there (so no
 * rename of this client or another comes between). Anything else answers EXDEV, as between two file
 * systems: a directory (its copies on every brick cannot be swapped at once), or names on two bricks
 * (a reader could meet the new file at one name and still the old at the other). A file whose
 * migration committed meanwhile is looked up again (EMOVED), and so is one replaced by another (ESTALE).
 */
export async function exchange(c: DhtClient, from: string, to: string): Promise<void> {
  from = normPath(from);
  to = normPath(to);
  if (from === '/' || to === '/') throw new FsError('EBUSY', 'cannot exchange /');
  if (to.startsWith(from + '/') || from.startsWith(to + '/')) throw new FsError('EINVAL', `${from} and ${to}: one is inside the other`);
  c.neg.gone(from);
  c.neg.gone(to);
  for (let attempt = 0; ; attempt++) {
    const [a, b] = await Promise.all([c.locate(from), c.locate(to)]);
    if (from === to) return;
    const exdev = (why: string) => new FsError('EXDEV', `RENAME_EXCHANGE of ${from} and ${to}: ${why}`);
    if (a.isDir || b.isDir) throw exdev('directories are not exchanged (their copies on every brick cannot be swapped at once)');
    const brick = a.cached;
    if (a.hashed !== brick || b.hashed !== brick || b.cached !== brick) throw exdev('the names are not both on one brick with their data');
    const f = splitPath(from);
    const t = splitPath(to);
    const [first, second] = [f, t].sort((x, y) => (x.parent + '/' + x.name < y.parent + '/' + y.name ? -1 : 1));
    try {
      await c.withParent(f.parent, (df) =>
        c.withParent(t.parent, async (dt) => {
          if (c.hashedBrick(df, f.name) !== brick || c.hashedBrick(dt, t.name) !== brick) throw exdev('the names hash to other bricks now');
          await c.entryLock(brick, first.parent, first.name, () =>
            c.entryLock(brick, second.parent, second.name, () => c.sv(brick).call('exchange', { from, to, gfid: needGfid(a.attr.gfid, from), toGfid: needGfid(b.attr.gfid, to), fromLayout: c.rangeOf(df, brick), parentLayout: c.rangeOf(dt, brick) })),
          );
        }),
      );
      return;
    } catch (e) {
      if ((codeOf(e) === EMOVED || codeOf(e) === 'ESTALE') && attempt < RACE_RETRIES) continue;
      throw e;
    }
  }
}

export async function renameOnce(c: DhtClient, from: string, to: string, resume: string | null, left: ReplacedFile): Promise<void> {
  let src: Located;
  try {
    src = await c.locate(from);
  } catch (e) {
    // An earlier attempt got as far as removing the old name: done, but for the replaced file's data.
    // Whether the new name has the file must be known: a brick still away is waited for, not taken
    // for an absence.
    if (resume && codeOf(e) === 'ENOENT') {
      // (Asked of every brick, not by a lookup of the name: that may find the replaced file's data.)
      const switched = await nameLeadsTo(c, to, resume, true).catch((e2) => {
        throw interrupted(e2, resume);
      });
      if (switched) {
        await dropOldName(c, from, resume).catch((e2) => {
          throw interrupted(e2, resume);
        });
        await dropReplaced(c, to, left).catch((e2) => {
          throw interrupted(e2, resume);
        });
        return;
      }
    }
    throw resume ? interrupted(e, resume) : e;
  }
  if (src.isDir) return renameDir(c, src, to);
  const gfid = src.attr.gfid ?? undefined;
  try {
    await renameFile(c, src, from, to, resume !== null && resume === gfid, left);
    await dropReplaced(c, to, left);
  } catch (e) {
    if (e instanceof SourceMoved) e.gfid = gfid;
    throw gfid ? interrupted(e, gfid) : e;
  }
}

/**
 * The old name of a file whose rename got past its switch, where it is still the file's: an old name not
 * found by its lookup may yet be on the data's brick, beside the new one (the old name's linkto became
 * the new name's when both hash to one brick, and the data's old name was cut off by an EIO before it
 * went). Left, it stayed for good: listed, but found by no lookup (--names --errors seed 7236).
 */
async function dropOldName(c: DhtClient, from: string, gfid: string): Promise<void> {
  await Promise.all(
    c.names.map((b) =>
      c
        .sv(b)
        .call('unlink', { path: from, gfid, ifOtherNames: true, clearIntent: true })
        .catch((e) => ignoreCodes(e, 'ENOENT', 'ESTALE', 'EBUSY')),
    ),
  );
}

/** Removes the data of the file a rename replaced, when it sits on a brick the new name does not use. */
export async function dropReplaced(c: DhtClient, to: string, left: ReplacedFile): Promise<void> {
  const r = left.at;
  if (!r) return;
  // A lost brick or an EIO is thrown (the rename is taken up again); ENOENT, ESTALE (the name is
  // another file there now: the switch replaced it) and EBUSY leave nothing to do.
  // An EIO too: taken as done, it left the replaced file's data, which came back once the new file was
  // unlinked (--names-strict --errors seed 84).
  const unlessGone = (e: unknown) => {
    if (codeOf(e) === 'ENOTCONN' || codeOf(e) === 'EIO') throw e;
  };
  try {
    await c.sv(r.brick).call('unlink', { path: to, gfid: r.gfid });
  } catch (e) {
    unlessGone(e);
    // The replaced file's migration committed meanwhile; its copy can never be installed at the name
    // (this rename holds it), so the commit record goes instead.
    if (codeOf(e) === EMOVED)
      await c
        .sv(r.brick)
        .call('migCleanup', { path: to, gfid: needGfid(r.gfid, `/${to}`) })
        .catch(unlessGone);
  }
  left.at = null;
}

export async function renameFile(c: DhtClient, src: Located, from: string, to: string, resuming: boolean, left: ReplacedFile): Promise<void> {
  let dst: Located | null = null;
  try {
    dst = await c.locate(to);
  } catch (e) {
    ignoreCodes(e, 'ENOENT');
  }
  if (dst?.isDir) throw new FsError('EISDIR', `${to}: is a directory`);
  // Two names of one file: POSIX says do nothing, unless they are this rename's own unfinished work.
  if (dst && dst.attr.gfid === src.attr.gfid && !resuming) return;
  const { parent: toParent, name: toName } = splitPath(to);
  const gfid = src.attr.gfid ?? undefined;
  // The replaced file's data goes once the switch is done (if the switch replaced it on its brick
  // already, the unlink, bound to its gfid, finds another file there and leaves it alone).
  if (dst && dst.attr.gfid !== gfid && dst.cached !== src.cached) left.at = { brick: dst.cached, gfid: dst.attr.gfid ?? undefined };
  // The data file has its new name (a retry on a refreshed layout must not redo it) ...
  let renamed = resuming && dst !== null && dst.attr.gfid === src.attr.gfid;
  let linked = renamed; // ... and still its old one
  await c.withParent(toParent, async (d) => {
    const dstHashed = c.hashedBrick(d, toName);
    await c.entryLock(dstHashed, toParent, toName, async () => {
      if (dstHashed !== src.cached) {
        // The data file gets the new name beside the old one first, so that a failure before the
        // switch below leaves the old state (plus an unreachable name the rebalancer removes), never a
        // file reachable by neither name.
        // (Linked on an earlier try, whose entry lock has been let go since: made again, idempotently,
        // as the rebalancer may have removed the then unreachable name meanwhile.)
        if (!renamed || linked) {
          const again = () =>
            c
              .sv(src.cached)
              .call('rename', { from, to, gfid })
              .catch((e) => targetMoved(c, src.cached, to, e).then(() => sourceMoved(e)));
          if (dst && dst.cached === src.cached) await again();
          else {
            linked = await c
              .sv(src.cached)
              .call('link', { from, to, gfid, intent: true, ...(left.at ? { replaced: left.at } : {}) })
              .then(
                () => true,
                (e) => (codeOf(e) === 'EEXIST' ? again().then(() => false) : sourceMoved(e)),
              );
          }
        }
        renamed = true;
        const link = { path: to, gfid: needGfid(gfid, `/${from}`), target: src.cached, uid: src.attr.uid, gid: src.attr.gid, parentLayout: c.rangeOf(d, dstHashed), replace: true };
        // If the new name's hashed brick has the old name's linkto, that one becomes the new name's.
        const viaOldLinkto = () => c.sv(dstHashed).call('rename', { from, to, gfid, parentLayout: c.rangeOf(d, dstHashed) });
        if (src.hashed === dstHashed) {
          await viaOldLinkto().catch((e) => {
            ignoreCodes(e, 'ENOENT');
            return c.sv(dstHashed).call('mklinkto', link);
          });
        } else {
          await c
            .sv(dstHashed)
            .call('mklinkto', link)
            .catch(async (e) => {
              // The switch failed: take the new name off the data again (best effort), so that it
              // cannot surface later. A layout change is retried by withParent with the name kept; a
              // lost brick or an EIO leaves the outcome unknown (an EIO can come after the linkto
              // replaced the old file there: undone then, the new name led nowhere and the replaced
              // file was gone, a name missing from listings until the rename was taken up again, sim
              // seed 12468), and the rename is taken up again from there.
              if (linked && codeOf(e) !== ELAYOUT && codeOf(e) !== 'ENOTCONN' && codeOf(e) !== 'EIO') {
                await c
                  .sv(src.cached)
                  .call('unlink', { path: to, gfid, ifOtherNames: true, clearIntent: true })
                  .then(() => (linked = renamed = false))
                  .catch(bestEffort('unlink', c.log));
              }
              throw e;
            });
        }
      } else if (!renamed) {
        await c
          .sv(src.cached)
          .call('rename', { from, to, gfid, parentLayout: c.rangeOf(d, dstHashed) })
          .catch(sourceMoved);
        renamed = true;
      }
      if (linked) {
        // The new name is in force: the old one goes.
        // Only while the data has another name: nothing is lost whatever happened meanwhile.
        await c
          .sv(src.cached)
          .call('unlink', { path: from, gfid, ifOtherNames: true, clearIntent: true })
          .catch((e) => {
            ignoreCodes(e, 'ENOENT');
          });
        linked = false;
      }

      if (src.hashed && src.hashed !== src.cached) {
        await c.sv(src.hashed).call('unlink', { path: from, onlyIfLinkto: true, gfid }).catch(bestEffort('unlink', c.log));
      }
    });
  });
}

/**
 * A directory renamed on every brick, under the namespace locks of both names (client.changingDirs), so
 * that no heal of either name comes between two of its steps: a heal of the old name there would have
 * renamed the new name's copy back (a heal's copy on a brick that holds the directory under another name
 * is that directory), leaving the directory at both names.
 */
export async function renameDir(c: DhtClient, src: Located, to: string): Promise<void> {
  await c.changingDirs([src.path, to], () => renameDirLocked(c, src, to));
}

async function renameDirLocked(c: DhtClient, src: Located, to: string): Promise<void> {
  let dst: Located | null = null;
  try {
    dst = await c.locate(to);
  } catch (e) {
    ignoreCodes(e, 'ENOENT');
  }
  if (dst && !dst.isDir) throw new FsError('ENOTDIR', `${to}: not a directory`);
  if (dst) {
    const entries = await c.readdirAll(to, { whole: true });
    if (entries.length > 0) throw new FsError('ENOTEMPTY', `${to}: directory not empty`);
  }
  const { parent: toParent, name: toName } = splitPath(to);
  await c.withParent(toParent, async (d) => {
    const dstHashed = c.hashedBrick(d, toName);
    if (dst) {
      // An empty target directory is replaced; its linkto leftovers go with it.
      await Promise.all(c.names.map((n) => c.sv(n).call('rmdir', { path: to, purgeLinktos: true }).catch(bestEffort('rmdir', c.log))));
    }
    const failed: unknown[] = [];
    try {
      await c.sv(dstHashed).call('rename', { from: src.path, to, parentLayout: c.rangeOf(d, dstHashed) });
    } catch (e) {
      if (codeOf(e) === ELAYOUT || codeOf(e) === 'ENOTCONN') throw e;
      failed.push(e); // (an EIO may come after the rename was made there)
    }
    if (failed.length === 0) {
      await Promise.all(
        c.names
          .filter((n) => n !== dstHashed)
          .map((n) =>
            c
              .sv(n)
              .call('rename', { from: src.path, to })
              .catch((e) => {
                if (codeOf(e) !== 'ENOENT') failed.push(e);
              }),
          ),
      );
    }
    if (failed.length === 0) return;
    // A brick out of reach leaves the outcome unknown (a heal makes the copies agree, see mkdir's
    // adoptRenamedDir). Any other error undoes the rename on every brick, so that it failed as a whole:
    // left, the directory was at both names (--names-strict --errors seed 13).
    if (!failed.some((e) => codeOf(e) === 'ENOTCONN')) await Promise.all(c.names.map((n) => undoDirRename(c, n, to, src.path)));
    throw failed[0];
  });
  c.invalidateTree(src.path);
  c.invalidateTree(to);
}

/** Renames a directory's copy on `brick` back from `to` to `from` (none there: nothing to undo), trying an error again. */
async function undoDirRename(c: DhtClient, brick: string, to: string, from: string): Promise<void> {
  for (let i = 0; ; i++) {
    try {
      await c.sv(brick).call('rename', { from: to, to: from });
      return;
    } catch (e) {
      if (codeOf(e) === 'ENOENT') return;
      if (i >= 2 || codeOf(e) === 'ENOTCONN') return bestEffort('rename', c.log)(e);
    }
  }
}

/** rename's data file was not where the lookup found it (a migration moved it): look it up again. */
class SourceMoved extends Error {
  /** The file being renamed (set by renameOnce). */
  gfid?: string;
  constructor(readonly original: unknown) {
    super('moved');
  }
}

/** The data of the file a rename replaced, still to be removed (kept across the rename's tries). */
interface ReplacedFile {
  at: { brick: string; gfid: string | undefined } | null;
}

/** A rename step failed for want of a brick, after the file (this gfid) may have been partly renamed. */
class Interrupted extends Error {
  constructor(
    readonly original: unknown,
    readonly gfid: string,
  ) {
    super('interrupted');
  }
}

/**
 * A step cut off by a lost brick, or by a disk error (EIO) on one: taken up again. An EIO between the
 * link and the old name's removal left both names, the file marked, and the namer settling the failed
 * rename found neither outcome (--names-strict --errors seed 86).
 */
function interrupted(e: unknown, gfid: string): unknown {
  const code = codeOf(e);
  return code === 'ENOTCONN' || code === 'EIO' ? new Interrupted(e, gfid) : e;
}

/**
 * A brick refused to rename over the name's old copy of a file that moved (EMOVED with `replaced`: its
 * migration committed, the copy not cleaned up yet): the copy goes (the migration's own cleanup, which
 * is idempotent), and the rename looks the name up again (its file is the installed copy elsewhere).
 */
async function targetMoved(c: DhtClient, brick: string, to: string, e: unknown): Promise<void> {
  const replaced = codeOf(e) === EMOVED ? infoOf(e)?.replaced : undefined;
  if (typeof replaced !== 'string') return;
  await c
    .sv(brick)
    .call('migCleanup', { path: to, gfid: replaced })
    .catch((e2) => ignoreCodes(e2, 'ENOENT', 'ESTALE', 'EINVAL'));
}

function sourceMoved(e: unknown): never {
  throw movedAway(e) ? new SourceMoved(e) : e;
}
