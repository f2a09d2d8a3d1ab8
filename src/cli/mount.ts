/**
 * `dhtfs mount` and `dhtfs umount`, and the mount(8) helper that makes `mount -t dhtfs VOLUME DIR` and
 * fstab lines work (edge code: processes, files, /proc).
 */
import fs from 'node:fs';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { Volume } from '../api/volume.js';
import { validateSpec, type VolumeSpec } from '../dht/spec.js';
import { FsError } from '../common/errors.js';
import { MAIN_JS, home, loadVolume } from './state.js';
import { parseVolumeAddress } from '../wire/mgmt.js';
import { specByHost } from '../api/network.js';
import { realClock } from '../common/real-env.js';

/** mount(8) and fstab options that mean nothing to FUSE: dropped before libfuse sees them. */
const MOUNT8_ONLY = new Set(['defaults', 'auto', 'noauto', 'user', 'nouser', 'users', 'owner', 'group', 'nofail', '_netdev', 'comment', 'rw']);

export interface MountOptionSet {
  /** Options for libfuse (-o). */
  fuse: string[];
  /** `home=DIR`: where the volume's state lives (DHTFS_HOME), for mounts made by mount(8) at boot. */
  home?: string;
  /** `entry_timeout=SECONDS`: how long the kernel keeps names (and the mount directories' attributes). */
  entryTimeout?: number;
  /** `nonempty`: mount over a directory that holds files (hiding them), which is refused otherwise. */
  nonempty?: boolean;
  /** `backup-volfile-servers=host2:host3`: nodes asked for a HOST:/NAME volume's spec when HOST does not answer. */
  volfileServers?: string;
  /** `tls-dir=DIR`: the client certificate for a HOST:/NAME volume (default $DHTFS_HOME/tls/client). */
  tlsDir?: string;
}

/** Splits a comma-separated -o list into libfuse options and dhtfs's own. */
export function parseMountOptions(list: string | undefined): MountOptionSet {
  const r: MountOptionSet = { fuse: [] };
  for (const raw of (list ?? '').split(',')) {
    const o = raw.trim();
    if (!o || MOUNT8_ONLY.has(o) || o.startsWith('x-') || o.startsWith('comment=')) continue;
    if (o.startsWith('home=')) r.home = o.slice(5);
    else if (o === 'nonempty') r.nonempty = true;
    else if (o.startsWith('backup-volfile-servers=')) r.volfileServers = o.slice(23);
    else if (o.startsWith('backupvolfile-server=')) r.volfileServers = o.slice(21);
    else if (o.startsWith('tls-dir=')) r.tlsDir = o.slice(8);
    else if (o.startsWith('entry_timeout=')) {
      const t = Number(o.slice(14));
      if (!Number.isFinite(t) || t < 0) throw new FsError('EINVAL', `bad mount option ${o}: seconds expected`);
      r.entryTimeout = t;
    } else r.fuse.push(o);
  }
  return r;
}

/**
 * A volume by name (from DHTFS_HOME), by the path of a spec file, or by HOST:/NAME (its spec from the
 * node daemon of HOST, or of the backup-volfile-servers, over the management path's TLS).
 */
export async function volumeSpec(name: string, opts: MountOptionSet = { fuse: [] }): Promise<VolumeSpec> {
  if (fs.existsSync(name) && name.endsWith('.json')) return validateSpec(JSON.parse(fs.readFileSync(name, 'utf8')));
  if (parseVolumeAddress(name)) return specByHost(name, realClock, { volfileServers: opts.volfileServers, tlsDir: opts.tlsDir });
  return loadVolume(name);
}

/** Whether a dhtfs FUSE file system is mounted at `mnt` (from /proc/self/mountinfo; no stat of the mount). */
export function isMounted(mnt: string): boolean {
  const want = path.resolve(mnt);
  try {
    for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
      const f = line.split(' ');
      const sep = f.indexOf('-');
      if (f[4] === want && sep > 0 && f[sep + 1] === 'fuse.dhtfs') return true;
    }
  } catch {
    /* no /proc */
  }
  return false;
}

/**
 * Refuses a mount point that is not an empty directory (its files would be hidden under the mount), unless
 * `nonempty` was given, as mount.fuse did before libfuse 3 made it the default.
 */
export function checkMountPoint(target: string, opts: MountOptionSet): void {
  let names: string[];
  try {
    names = fs.readdirSync(target);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'EIO';
    throw new FsError(code, `mount point ${target}: ${code === 'ENOENT' ? 'no such directory' : code === 'ENOTDIR' ? 'not a directory' : 'cannot be read'}`);
  }
  if (names.length > 0 && !opts.nonempty) throw new FsError('ENOTEMPTY', `mount point ${target} is not empty; mount with -o nonempty to mount over its files`);
}

/**
 * Mounts in this process and serves until SIGINT, SIGTERM or an unmount from outside; then unmounts
 * cleanly and resolves.
 */
export async function mountForeground(name: string, mnt: string, opts: MountOptionSet, say: (s: string) => void): Promise<void> {
  const { FuseMount, fuseAvailable } = await import('../fuse/mount.js');
  const avail = fuseAvailable();
  if (!avail.ok) throw new FsError('ENODEV', `cannot mount: ${avail.why}`);
  const spec = await volumeSpec(name, opts);
  const target = path.resolve(mnt);
  checkMountPoint(target, opts);
  // The addon makes the mount's local reads itself (native/fuse.c), not the library.
  const vol = await Volume.connect(spec, { localFiles: null, umask: 0 }); // the kernel applies callers' umasks
  let ended!: () => void;
  const done = new Promise<void>((r) => (ended = r));
  const m = new FuseMount(vol, target, {
    options: opts.fuse,
    entryTimeout: opts.entryTimeout,
    onError: (op, p, e) => process.stderr.write(`dhtfs mount: ${op} ${p}: ${(e as Error)?.message ?? e}\n`),
    onEnded: () => ended(),
  });
  m.mount();
  say(`mounted volume ${spec.name} on ${target}\n`);
  const stop = () => void m.unmount();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  await done;
  await vol.close();
  say(`unmounted ${target}\n`);
}

/**
 * Starts the mount as a detached process (its output goes to DHTFS_HOME/logs/mount-*.log) and returns
 * once the file system is mounted, as mount(8) expects of a helper; fails with the log's tail if the
 * process ends first.
 */
export async function mountBackground(name: string, mnt: string, list: string | undefined): Promise<{ pid: number; log: string }> {
  const target = path.resolve(mnt);
  if (isMounted(target)) throw new FsError('EBUSY', `${target} is already a dhtfs mount`);
  checkMountPoint(target, parseMountOptions(list));
  const logs = path.join(home(), 'logs');
  fs.mkdirSync(logs, { recursive: true });
  const log = path.join(logs, `mount-${target.replace(/[^A-Za-z0-9._-]+/g, '_')}.log`);
  const fd = fs.openSync(log, 'a');
  const child = spawn(process.execPath, [MAIN_JS, 'mount', name, target, ...(list ? ['-o', list] : [])], { detached: true, stdio: ['ignore', fd, fd], env: process.env });
  fs.closeSync(fd);
  let exited: number | null = null;
  child.once('exit', (code) => (exited = code ?? 1));
  const deadline = Date.now() + 30_000;
  while (!isMounted(target)) {
    if (exited !== null || Date.now() > deadline) {
      if (exited === null) child.kill('SIGTERM');
      const tail = fs.readFileSync(log, 'utf8').trim().split('\n').slice(-5).join('\n');
      throw new FsError('EIO', `the mount process ${exited !== null ? `exited (${exited})` : 'did not mount in 30 s'}: ${tail}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  child.unref();
  return { pid: child.pid!, log };
}

/** Unmounts `mnt`, also a mount whose process died ("Transport endpoint is not connected"). */
export function unmount(mnt: string): void {
  const target = path.resolve(mnt);
  for (const [cmd, args] of [
    ['fusermount3', ['-u', target]],
    ['fusermount3', ['-uz', target]],
    ['umount', ['-l', target]],
  ] as const) {
    if (spawnSync(cmd, [...args], { stdio: 'pipe' }).status === 0) return;
  }
  throw new FsError('EINVAL', `${target} is not mounted (or cannot be unmounted)`);
}

/**
 * The mount(8) helper: mount runs `mount.dhtfs SPEC DIR [-sfnv] [-N ns] [-o OPTS] [-t type]`; the
 * script keeps SPEC, DIR and -o and starts `dhtfs mount --background` of this installation.
 */
export function helperScript(): string {
  return `#!/bin/sh
# mount(8) helper for dhtfs (written by 'dhtfs mount-helper install'):
#   mount -t dhtfs VOLUME DIR [-o OPTIONS]     fstab: VOLUME DIR dhtfs defaults,_netdev[,home=DIR] 0 0
# VOLUME is HOST:/NAME (the spec from HOST's node daemon; -o backup-volfile-servers=HOST2:HOST3),
# a volume name (under DHTFS_HOME, or home=DIR) or the path of a spec file.
spec="$1"; dir="$2"; opts=""
shift 2 2>/dev/null
while [ $# -gt 0 ]; do
  case "$1" in
    -o) opts="$2"; shift 2 ;;
    -o*) opts="\${1#-o}"; shift ;;
    -N|-t) shift 2 ;;
    *) shift ;;
  esac
done
exec ${JSON.stringify(process.execPath)} ${JSON.stringify(MAIN_JS)} mount --background \${opts:+-o "$opts"} "$spec" "$dir"
`;
}

export function installHelper(dir: string): string {
  const file = path.join(dir, 'mount.dhtfs');
  fs.writeFileSync(file, helperScript(), { mode: 0o755 });
  fs.chmodSync(file, 0o755);
  return file;
}
