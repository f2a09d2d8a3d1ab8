/**
 * S5 (clean bricks) once the rebalance or drain is over: each file once, as a plain data file, on its
 * hashed brick; no linkto (but a hard link's other names'), S/T bits, commit record, rename mark or
 * migration copy left, and nothing left on a drained brick. While files migrate these are all expected,
 * so this one runs after the last rebalance, not after every event (S3 does).
 */
import type { SimStorage } from '../storage.js';

/** S5: each file once, as a plain data file, on its hashed brick; no linkto, copy or commit record left. */
export function checkBricks(storages: SimStorage[], names: string[], files: string[], violations: string[], drained: string | null, lenient: Set<string>, linked: Set<string> | null): void {
  const seen = new Map<string, number>();
  storages.forEach((st, i) => {
    const walk = (dir: string) => {
      for (const e of st.readdir(dir)) {
        const p = dir ? `${dir}/${e.name}` : e.name;
        if (p === '.glusterfs') continue;
        if (e.type === 'dir') {
          walk(p);
          continue;
        }
        if (lenient.has(p)) continue;
        const s = st.lstat(p);
        const linkto = st.getxattr(p, 'trusted.glusterfs.dht.linkto');
        if ((s.mode & 0o7777) === 0o1000 && linkto) {
          // Under /t: a name of a file with several (hard links), or any when the names are not known.
          if (p.startsWith('t/') && (linked === null || linked.has(p))) continue;
          violations.push(`S5 linkto left: ${p} on ${names[i]}`);
          continue;
        }
        if (s.mode & 0o7000) violations.push(`S5 S/T bits on ${p} on ${names[i]}`);
        if (st.getxattr(p, 'trusted.dhtfs.migration')) violations.push(`S5 commit record left on ${p} on ${names[i]}`);
        // A rename's mark whose removal a power loss took back, the rename itself kept (the namer's names
        // are then not known): its next client settles it.
        if (st.getxattr(p, 'trusted.dhtfs.rename') && !(p.startsWith('t/') && linked === null)) violations.push(`S5 unfinished rename left on ${p} on ${names[i]}`);
        if (seen.has(p)) violations.push(`S5 ${p} has data on ${names[seen.get(p)!]} and ${names[i]}`);
        if (names[i] === drained) violations.push(`remove-brick: ${p} is still on the drained brick ${drained}`);
        seen.set(p, i);
      }
    };
    walk('');
    try {
      const left = st.readdir('.glusterfs/dhtfs-migrate');
      if (left.length) violations.push(`S5 migration copies left on ${names[i]}: ${left.map((e) => e.name).join(', ')}`);
    } catch {
      /* none made */
    }
  });
  for (const f of files) if (!seen.has(`d/${f}`) && !lenient.has(`d/${f}`)) violations.push(`S5 d/${f} has no data file`);
}
