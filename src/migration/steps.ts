/**
 * The steps of a file migration, by name. The SPIN models in model/ label their steps with these
 * names (`step_<name>` with '-' as '_'); test/model.test.ts fails when the lists drift apart.
 * docs/MIGRATION.md describes what each step does and what a crash after it leaves.
 */

/** dhtfs's safe protocol: src's brick decides; one commit at src under the migrator's lease. */
export const SAFE_STEPS = [
  'lease', // src: grant a lease with a token; start tracking writes (dirty ranges)
  'prepare-dst', // dst: linkto -> src at the name if none; a private temp file named by the token
  'copy', // bulk copy src -> temp
  'recopy', // fetch-and-clear the dirty ranges under the lease; copy them again (repeat)
  'freeze', // src: hold writes and attribute changes; return the last dirty ranges and attributes
  'final-copy', // copy the last ranges, set size and attributes, fsync the temp file
  'commit', // src: record "moved to dst, token" (persisted), under the lease: the commit point
  'install', // dst: rename the temp file over the name (idempotent; anyone who sees the commit may do it)
  'cleanup', // src: remove the data file
  'release', // give the lease back
] as const;

/** GlusterFS's order (dht_migrate_file, reference §3.3), kept to show its race on the real system. */
export const LEGACY_STEPS = [
  'create-dst', // dst: 01000 + linkto -> src
  'phase1', // src: linkto -> dst, mode M|S|T
  'copy', // copy data
  'dst-data', // dst: mode M (a second data file: the race window opens)
  'src-linkto', // src: mode 01000 (window closes)
  'truncate-src',
  'dst-remove-linkto',
  'unlink-src',
] as const;

export type SafeStep = (typeof SAFE_STEPS)[number];
export type LegacyStep = (typeof LEGACY_STEPS)[number];
