#!/usr/bin/env bash
# Installs what dhtfs needs and builds it. Idempotent; called by `npm start`, `npm test`, `npm run bench`.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm install --no-audit --no-fund
fi
npx tsc -p tsconfig.json
# SPIN model checker for test/model.test.ts (Debian package), and gcc for its verifiers.
if ! command -v spin >/dev/null 2>&1 || ! command -v gcc >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    (apt-get install -y --no-install-recommends spin gcc libc6-dev >/dev/null 2>&1 || (apt-get update >/dev/null && apt-get install -y --no-install-recommends spin gcc libc6-dev >/dev/null))
  else
    echo "setup: SPIN is missing; install Debian's 'spin' package (the model tests need it)" >&2
  fi
fi
# FUSE mount (src/fuse): Debian's libfuse 3 (headers for the addon, fusermount3) and pkg-config, then the
# small N-API addon in native/, built by the node-gyp that ships with npm against Node's own headers.
if ! pkg-config --exists fuse3 2>/dev/null || ! command -v fusermount3 >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    (apt-get install -y --no-install-recommends libfuse3-dev fuse3 pkg-config >/dev/null 2>&1 || (apt-get update >/dev/null && apt-get install -y --no-install-recommends libfuse3-dev fuse3 pkg-config >/dev/null))
  else
    echo "setup: libfuse 3 is missing; install Debian's 'libfuse3-dev', 'fuse3' and 'pkg-config' (dhtfs mount needs them)" >&2
  fi
fi
# etcd (Debian's etcd-server) for a cluster's state (src/cluster/etcd-store.ts) and the tests that run one.
if ! command -v etcd >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    (apt-get install -y --no-install-recommends etcd-server >/dev/null 2>&1 || (apt-get update >/dev/null && apt-get install -y --no-install-recommends etcd-server >/dev/null)) || echo "setup: could not install etcd-server (cluster tests are skipped without it)" >&2
  else
    echo "setup: etcd is missing; install Debian's 'etcd-server' (a cluster keeps its state in it)" >&2
  fi
fi
# The openssl command makes certificates and CRLs (src/cli/cert.ts; CRLs are verified with node:crypto).
if ! command -v openssl >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    (apt-get install -y --no-install-recommends openssl >/dev/null 2>&1 || (apt-get update >/dev/null && apt-get install -y --no-install-recommends openssl >/dev/null)) || echo "setup: could not install openssl (TLS and cluster tests need it)" >&2
  else
    echo "setup: openssl is missing; install Debian's 'openssl' (certificates for TLS are made with it)" >&2
  fi
fi
# Programs the FUSE tests run unmodified on the mount (git, tar and coreutils are in the base system), and
# Debian's python3 (test/helpers/posix-runner.ts: mkfifo, utimensat and xattrs as other users, who may
# not run a python3 under /root).
for prog in /usr/bin/rsync /usr/bin/sqlite3 /usr/bin/python3; do
  if [ ! -x "$prog" ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    pkg=$(basename "$prog")
    (apt-get install -y --no-install-recommends "$pkg" >/dev/null 2>&1 || (apt-get update >/dev/null && apt-get install -y --no-install-recommends "$pkg" >/dev/null)) || echo "setup: could not install $pkg (the FUSE tests need it)" >&2
  fi
done
ADDON=native/build/Release/dhtfs_fuse.node
if [ ! -f "$ADDON" ] || [ native/fuse.c -nt "$ADDON" ] || [ native/check.h -nt "$ADDON" ] || [ native/binding.gyp -nt "$ADDON" ]; then
  GYP="$(npm root -g)/npm/node_modules/node-gyp/bin/node-gyp.js"
  NODEDIR="$(dirname "$(dirname "$(command -v node)")")"
  (cd native && node "$GYP" rebuild --nodedir="$NODEDIR" >build.log 2>&1) || { echo "setup: the FUSE addon did not build (native/build.log); dhtfs mount is unavailable" >&2; tail -20 native/build.log >&2; }
fi
# copy_file_range for bricks (a migration between two bricks of one host copies in the kernel), and the
# *at calls every brick resolves its names with (native/copy/at.c); without it, bricks copy through
# memory and fall back to Node's path calls (logged).
COPY_ADDON=native/copy/build/Release/dhtfs_copy.node
if [ ! -f "$COPY_ADDON" ] || [ native/copy/copy.c -nt "$COPY_ADDON" ] || [ native/check.h -nt "$COPY_ADDON" ] || [ native/copy/at.c -nt "$COPY_ADDON" ] || [ native/copy/binding.gyp -nt "$COPY_ADDON" ]; then
  GYP="$(npm root -g)/npm/node_modules/node-gyp/bin/node-gyp.js"
  NODEDIR="$(dirname "$(dirname "$(command -v node)")")"
  (cd native/copy && node "$GYP" rebuild --nodedir="$NODEDIR" >build.log 2>&1) || { echo "setup: the copy addon did not build (native/copy/build.log); bricks copy through memory" >&2; tail -20 native/copy/build.log >&2; }
fi
