/**
 * Runs a list of file-system steps in one directory and prints what each returned, as JSON: the runner
 * of the POSIX conformance test (test/posix.test.ts), which runs the same steps on the local disk and on
 * the mount and compares. Started as root; each step acts as its user (effective uid, gid and groups,
 * which the kernel checks permissions against, and FUSE passes on as the caller).
 *
 * `posix-runner.js run`, stdin: {"dir": DIR, "users": {name: User}, "steps": [[user, op, ...args], ...]}; stdout: one result a step: "ok", an errno
 * code, or what the step reads (a stat's kind, mode, owner, links and size; a listing; bytes; a link's
 * target; which of a file's times moved since it was stamped, under its name or the key given).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';

export interface User {
  uid: number;
  gid: number;
  groups: number[];
}
export type Step = [user: string, op: string, ...args: (string | number)[]];

// Started with `run` (the test runner, which also loads every file under test/, starts it without).
const main = process.argv[2] === 'run';
const input = (main ? JSON.parse(fs.readFileSync(0, 'utf8')) : { dir: '.', users: {}, steps: [] }) as { dir: string; users: Record<string, User>; steps: Step[] };
if (main) {
  process.chdir(input.dir);
  process.umask(0o022);
}

let current = 'root';
function become(name: string): void {
  if (name === current) return;
  const u = input.users[name];
  if (!u) throw new Error(`no user ${name}`);
  process.seteuid!(0);
  process.setgroups!(u.groups);
  process.setegid!(u.gid);
  process.seteuid!(u.uid);
  current = name;
}

/**
 * What Node has no call for (mkfifo, utimensat with UTIME_NOW, xattrs with their flags) goes through
 * Debian's python3, started with this process's effective user: `code` runs with the step's arguments
 * as `a`; the answer is `r` when the code sets it, else "ok", or the errno code.
 */
const PY = `import os, sys, errno
a = sys.argv[2:]
try:
    r = 'ok'
    exec(sys.argv[1])
    print(r)
except OSError as e:
    print(errno.errorcode[e.errno])`;
function py(code: string, args: (string | number)[]): string {
  const r = spawnSync('/usr/bin/python3', ['-c', PY, code, ...args.map(String)], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`python3: ${r.stderr || r.error}`);
  return r.stdout.trim();
}

const kind = (st: fs.Stats) => (st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : st.isFIFO() ? 'fifo' : st.isSocket() ? 'socket' : 'other');

/** What a test may compare between two file systems: not inode numbers, block counts or times. */
function describe(st: fs.Stats): string {
  const size = st.isDirectory() ? '' : ` size=${st.size}`;
  return `${kind(st)} mode=${(st.mode & 0o7777).toString(8)} uid=${st.uid} gid=${st.gid} nlink=${st.nlink}${size}`;
}

/** Times taken by `stamp`, compared by `times`. */
const stamps = new Map<string, fs.BigIntStats>();
const held = new Map<string, number>();
const pause = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

function run(op: string, a: (string | number)[]): string {
  const p = String(a[0]);
  const n = (i: number) => Number(a[i]);
  switch (op) {
    case 'mkdir':
      fs.mkdirSync(p, n(1));
      return 'ok';
    case 'rmdir':
      fs.rmdirSync(p);
      return 'ok';
    case 'create': {
      fs.closeSync(fs.openSync(p, fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_WRONLY, n(1)));
      return 'ok';
    }
    case 'open': {
      // Flags by name: 'r', 'w', 'rw', with '+creat', '+trunc', '+excl', '+nofollow', '+directory', '+append'.
      const [base, ...more] = String(a[1]).split('+');
      const C = fs.constants;
      let flags = base === 'r' ? C.O_RDONLY : base === 'w' ? C.O_WRONLY : C.O_RDWR;
      const names: Record<string, number> = { creat: C.O_CREAT, trunc: C.O_TRUNC, excl: C.O_EXCL, nofollow: C.O_NOFOLLOW, directory: C.O_DIRECTORY, append: C.O_APPEND };
      for (const m of more) flags |= names[m]!;
      fs.closeSync(fs.openSync(p, flags, a.length > 2 ? n(2) : 0o644));
      return 'ok';
    }
    case 'write': {
      const fd = fs.openSync(p, fs.constants.O_WRONLY | fs.constants.O_APPEND);
      try {
        fs.writeSync(fd, String(a[1]));
      } finally {
        fs.closeSync(fd);
      }
      return 'ok';
    }
    case 'hold':
      // An fd kept open across steps (and users) for `pwrite`, closed by `release`.
      held.set(p, fs.openSync(p, fs.constants.O_WRONLY));
      return 'ok';
    case 'pwrite': {
      const fd = held.get(p)!;
      fs.writeSync(fd, Buffer.alloc(n(1), 'p'), 0, n(1), fs.fstatSync(fd).size);
      // Long enough for the mount to have the fd write its brick's file itself from now on.
      pause(50);
      return 'ok';
    }
    case 'release':
      fs.closeSync(held.get(p)!);
      held.delete(p);
      return 'ok';
    case 'mkfifo':
      return py('os.mkfifo(a[0], int(a[1]))', a);
    case 'mksock':
      // bind(2) of a Unix socket makes its name (mknod with S_IFSOCK).
      return py('import socket\ns = socket.socket(socket.AF_UNIX)\ns.bind(a[0])\ns.close()', a);
    case 'touch':
      // utimensat(2) with both times UTIME_NOW: allowed to the owner and to anyone who may write the file.
      return py('os.utime(a[0], None)', a);
    case 'setxattr':
      // a[3]: 'create' (XATTR_CREATE), 'replace' (XATTR_REPLACE) or nothing.
      return py("os.setxattr(a[0], a[1], a[2].encode(), {'create': os.XATTR_CREATE, 'replace': os.XATTR_REPLACE}.get(a[3] if len(a) > 3 else '', 0))", a);
    case 'getxattr':
      return py("r = 'value=' + os.getxattr(a[0], a[1]).decode()", a);
    case 'listxattr':
      return py("r = 'names=' + ','.join(sorted(os.listxattr(a[0])))", a);
    case 'removexattr':
      return py('os.removexattr(a[0], a[1])', a);
    case 'read':
      return `data=${fs.readFileSync(p, 'utf8')}`;
    case 'unlink':
      fs.unlinkSync(p);
      return 'ok';
    case 'rename':
      fs.renameSync(p, String(a[1]));
      return 'ok';
    case 'link':
      fs.linkSync(p, String(a[1]));
      return 'ok';
    case 'symlink':
      fs.symlinkSync(p, String(a[1]));
      return 'ok';
    case 'readlink':
      return `target=${fs.readlinkSync(p)}`;
    case 'chmod':
      fs.chmodSync(p, n(1));
      return 'ok';
    case 'chown':
      fs.chownSync(p, n(1), n(2));
      return 'ok';
    case 'lchown':
      fs.lchownSync(p, n(1), n(2));
      return 'ok';
    case 'truncate':
      fs.truncateSync(p, n(1));
      return 'ok';
    case 'utimes':
      fs.utimesSync(p, n(1), n(2));
      return 'ok';
    case 'stat':
      return describe(fs.statSync(p));
    case 'lstat':
      return describe(fs.lstatSync(p));
    case 'mtime':
      return `mtime=${fs.statSync(p).mtimeMs}`;
    case 'readdir':
      return `names=${fs.readdirSync(p).sort().join(',')}`;
    case 'stamp':
      stamps.set(String(a[1] ?? p), fs.lstatSync(p, { bigint: true }));
      // The kernel's clock for times moves in ticks of a few milliseconds.
      pause(20);
      return 'ok';
    case 'times': {
      const was = stamps.get(String(a[1] ?? p))!;
      const now = fs.lstatSync(p, { bigint: true });
      return `mtime ${now.mtimeNs === was.mtimeNs ? 'same' : 'moved'}, ctime ${now.ctimeNs === was.ctimeNs ? 'same' : 'moved'}`;
    }
    default:
      throw new Error(`unknown op ${op}`);
  }
}

const out: string[] = [];
for (const [user, op, ...args] of input.steps) {
  become(user);
  try {
    out.push(run(op, args));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (!code) throw e;
    out.push(code);
  }
}
if (main) {
  become('root');
  process.stdout.write(JSON.stringify(out));
}
