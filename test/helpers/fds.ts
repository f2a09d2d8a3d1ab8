/** What a process holds open, as /proc shows it (tests of local reads and writes). */
import fs from 'node:fs';
import path from 'node:path';

/** The files process `pid` holds open. */
export function openFiles(pid: number | 'self'): string[] {
  return descriptors(pid).map((d) => d.file);
}

/** The access modes (O_RDONLY, O_WRONLY or O_RDWR) of process `pid`'s descriptors of `file`. */
export function openModes(pid: number | 'self', file: string): number[] {
  const out: number[] = [];
  for (const d of descriptors(pid)) {
    if (d.file !== file) continue;
    try {
      out.push(parseInt(/flags:\s*([0-7]+)/.exec(fs.readFileSync(`/proc/${pid}/fdinfo/${d.n}`, 'utf8'))![1], 8) & 3);
    } catch {
      /* closed meanwhile */
    }
  }
  return out;
}

function descriptors(pid: number | 'self'): { n: string; file: string }[] {
  const dir = `/proc/${pid}/fd`;
  const out: { n: string; file: string }[] = [];
  for (const n of fs.readdirSync(dir)) {
    try {
      out.push({ n, file: fs.readlinkSync(path.join(dir, n)) });
    } catch {
      /* closed meanwhile */
    }
  }
  return out;
}
