/** Volume operations: the root's commit hash and topology (admin), statfs, directory layouts. */
import { FsError, ignoreCodes } from '../../common/errors.js';
import { encodeRanges } from '../../wire/layout-xattr.js';
import { type Attr, type RootInfo, type StatFsReply, TOPOLOGY_CHANGED } from '../../wire/types.js';
import { isDir } from '../format.js';
import { bad, U32, type Decoded } from '../../wire/ops.js';
import type { BrickCore, Session } from '../core.js';

export function rootInfo(b: BrickCore): RootInfo {
  const raw = b.st.getxattr('', b.X.commit);
  let commitHash: number | null = null;
  if (raw) {
    const n = Number(Buffer.from(raw).toString('utf8').replace(/\0$/, ''));
    if (Number.isSafeInteger(n) && n >= 0 && n <= U32) commitHash = n;
  }
  return { attr: b.attrOf(''), commitHash, brick: b.cfg.name };
}

/** The volume's bricks as last written by the CLI (add-brick, remove-brick); null if never. */
export function getTopology(b: BrickCore): { topology: unknown } {
  const raw = b.st.getxattr('', b.X.topology);
  if (!raw) return { topology: null };
  try {
    return { topology: JSON.parse(Buffer.from(raw).toString('utf8')) };
  } catch {
    return { topology: null };
  }
}

/** The volume's topology, durable before the reply: a brick must not forget a new brick or a drain at a power loss. */
export async function setTopology(b: BrickCore, a: Decoded<'setTopology'>, s?: Session): Promise<{ topology: unknown }> {
  b.needAdmin(s, 'setTopology');
  const t = a.topology;
  const json = JSON.stringify(t);
  if (json.length > 3500) throw new FsError('E2BIG', 'topology too large for one xattr');
  const cur = getTopology(b).topology as { version?: number } | null;
  const v = (t as { version?: unknown }).version;
  if (!Number.isSafeInteger(v)) throw bad('topology', 'needs a version');
  if (cur && typeof cur.version === 'number' && cur.version > (v as number)) throw new FsError('ESTALE', `topology version ${v as number} is older than ${cur.version}`);
  // Compare-and-set on the version: a writer that started from a stale topology makes the version this
  // brick has already (another change made it first) with other contents; only the same one is taken again.
  if (cur && cur.version === v && JSON.stringify(cur) !== json) throw new FsError('ESTALE', `topology version ${v as number} was made by another change first: read the volume's topology again`);
  b.st.setxattr('', b.X.topology, Buffer.from(json));
  b.applyTopology(t);
  // Clients connected now read it at once (new bricks, options set with `volume set`).
  for (const s of b.sessions.values()) s.notify(TOPOLOGY_CHANGED, { version: v });
  await b.fsyncDir('');
  return { topology: t };
}

export function statfs(b: BrickCore): StatFsReply {
  return b.st.statfs();
}

/**
 * A directory's layout, durable before the reply: a layout that a power loss took back would send
 * lookups of the names the new one placed here to another brick (the simulator's journal disk found it).
 */
export async function setLayout(b: BrickCore, a: Decoded<'setLayout'>): Promise<Attr> {
  const rel = b.walk(a.path);
  const layout = a.layout;
  const st = b.st.lstat(rel);
  if (!isDir(st)) throw new FsError('ENOTDIR', `/${rel} is not a directory`);
  if (layout === null) {
    try {
      b.st.removexattr(rel, b.X.dht);
    } catch (e) {
      ignoreCodes(e, 'ENODATA');
    }
  } else b.st.setxattr(rel, b.X.dht, encodeRanges(layout));
  // A new layout may give ranges to a brick the watchers do not watch the directory on (add-brick).
  b.watches.changedIn(rel, true);
  await b.fsyncDir(rel);
  return b.attr(rel, st);
}

/** An ordinary session may give a brick its first commit hash (a new volume's first client does), not change it. */
export function setCommitHash(b: BrickCore, a: Decoded<'setCommitHash'>, s?: Session): RootInfo {
  const v = a.value;
  if (s && !s.admin) {
    const cur = rootInfo(b).commitHash;
    if (cur !== null && cur !== v) b.needAdmin(s, 'setCommitHash');
  }
  b.st.setxattr('', b.X.commit, Buffer.from(`${v}\0`));
  return rootInfo(b);
}
