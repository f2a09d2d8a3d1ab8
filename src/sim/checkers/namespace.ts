/**
 * Namespace checker: the whole tree under /t, as a fresh client sees it, against the namer's model
 * (names.ts), after every operator event (add-brick, remove-brick commit) and at the end. Nothing lost
 * (every name of the model is there), nothing doubled (no name listed twice, none the model lacks), and
 * every kind of name intact: its type, a symlink's target, a file's bytes, the link count of a name with
 * several, and one gfid for all the names of one inode.
 */
import { codeOf } from '../../common/errors.js';
import type { Volume } from '../../api/volume.js';
import type { NameKind, NameModel } from '../names.js';

function kindOf(mode: number): NameKind | 'other' {
  switch (mode & 0o170000) {
    case 0o040000:
      return 'dir';
    case 0o100000:
      return 'file';
    case 0o120000:
      return 'symlink';
    case 0o010000:
      return 'fifo';
    case 0o140000:
      return 'sock';
    default:
      return 'other';
  }
}

/** Checks the tree; returns the violations found (`when`: the event it follows). */
export async function checkNamespace(v: Volume, m: NameModel, when: string): Promise<string[]> {
  if (m.uncertain) return [];
  const out: string[] = [];
  const seen = new Map<string, { kind: NameKind | 'other'; gfid: string | null; nlink: number }>();
  const walk = async (dir: string) => {
    const names = await v.readdir(dir, { whole: true });
    const dup = names.filter((n, i) => names.indexOf(n) !== i);
    if (dup.length) out.push(`namespace after ${when}: ${dir} lists ${dup.join(', ')} twice`);
    for (const n of new Set(names)) {
      const p = `${dir}/${n}`;
      let st;
      try {
        st = await v.lstat(p);
      } catch (e) {
        out.push(`namespace after ${when}: ${p} is listed but its lookup fails with ${codeOf(e)}`);
        continue;
      }
      const kind = kindOf(st.mode);
      seen.set(p, { kind, gfid: st.gfid, nlink: st.nlink });
      if (kind === 'dir') await walk(p);
    }
  };
  await walk('/t');
  const gfidOf = new Map<number, string | null>();
  for (const [p, ino] of m.paths) {
    if (p === '/t') continue;
    const want = m.inodes.get(ino)!;
    const got = seen.get(p);
    if (!got) {
      // Not listed: is it there at all (a lookup), or lost?
      const there = await v.lstat(p).then(
        () => 'found by lookup, but not listed',
        (e) => `lost (${codeOf(e)})`,
      );
      out.push(`namespace after ${when}: ${want.kind} ${p} ${there}`);
      continue;
    }
    if (got.kind !== want.kind) {
      out.push(`namespace after ${when}: ${p} is a ${got.kind}, the model has a ${want.kind}`);
      continue;
    }
    if (want.kind === 'symlink') {
      const t = await v.readlink(p).catch((e) => `(${codeOf(e)})`);
      if (t !== want.body) out.push(`namespace after ${when}: symlink ${p} -> ${t}, the model has -> ${want.body}`);
    }
    if (want.kind === 'file') {
      const b = await v.readFile(p).then(
        (x) => x.toString(),
        (e) => `(${codeOf(e)})`,
      );
      if (b !== want.body) out.push(`namespace after ${when}: ${p} holds ${JSON.stringify(b)}, the model has ${JSON.stringify(want.body)}`);
    }
    if (want.kind !== 'dir') {
      const links = m.linksOf(ino).length;
      if (got.nlink !== links) out.push(`namespace after ${when}: ${want.kind} ${p} has ${got.nlink} links, the model has ${links}`);
      const g = gfidOf.get(ino);
      if (g === undefined) gfidOf.set(ino, got.gfid);
      else if (g !== got.gfid) out.push(`namespace after ${when}: ${p} has gfid ${got.gfid}, another name of its inode ${g}`);
    }
  }
  for (const p of seen.keys()) if (!m.paths.has(p)) out.push(`namespace after ${when}: ${p} (${seen.get(p)!.kind}) is there, the model has no such name`);
  return out;
}
