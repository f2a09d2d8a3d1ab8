/** `dhtfs mount` as its own process (a daemon must never be called synchronously from its own thread). */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startCluster, type Cluster } from './cluster.js';

export const MAIN_JS = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'src', 'cli', 'main.js');

export function mounted(dir: string): boolean {
  return fs
    .readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .some((l) => l.split(' ')[1] === dir);
}

/** Mounts the volume of `specFile` on `mnt` (`-o options` if given); resolves once the mount answers a stat. */
export async function startMount(specFile: string, mnt: string, options?: string): Promise<ChildProcess> {
  const p = spawn(process.execPath, [MAIN_JS, 'mount', specFile, mnt, ...(options ? ['-o', options] : [])], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  p.stderr!.on('data', (d) => (err += d));
  p.stdout!.resume();
  for (let i = 0; i < 200; i++) {
    if (mounted(mnt)) {
      try {
        // The kernel sends INIT right after the mount; the first stat proves the daemon answers.
        fs.statSync(mnt);
        return p;
      } catch {
        /* not yet */
      }
    }
    if (p.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  p.kill('SIGKILL');
  throw new Error(`mount did not come up: ${err}`);
}

/** Three bricks and `dhtfs mount` of them at `c.base/mnt`, for the tests that work through a mount. */
export async function mountCluster(name: string, options?: string): Promise<{ c: Cluster; specFile: string; mnt: string; daemon: ChildProcess }> {
  const c = await startCluster(3, { name });
  const specFile = path.join(c.base, 'spec.json');
  fs.writeFileSync(specFile, JSON.stringify(c.spec));
  const mnt = path.join(c.base, 'mnt');
  fs.mkdirSync(mnt);
  return { c, specFile, mnt, daemon: await startMount(specFile, mnt, options) };
}

/** Ends `daemon` (SIGTERM unmounts), unmounts `mnt` lazily if it is still mounted, and stops the cluster. */
export async function unmountCluster(c: Cluster | undefined, mnt: string, daemon: ChildProcess | null): Promise<void> {
  if (daemon && daemon.exitCode === null) {
    daemon.kill('SIGTERM');
    await once(daemon, 'exit');
  }
  if (mnt && mounted(mnt)) spawnSync('umount', ['-l', mnt]);
  await c?.stop();
}
