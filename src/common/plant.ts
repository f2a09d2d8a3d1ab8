/**
 * Planted bugs, for showing that the simulator and the tests catch them (like FoundationDB's BUGGIFY).
 * Empty in the product; only the simulator's `--plant` and tests add to it.
 *   read-ignores-moved   src serves reads of a file whose migration committed
 *   track-at-enter       a change is tracked only if a migration was live when it began
 *   local-read-ignores-record   a library handle's local read does not check for a commit record
 *   lease-ignores-local-writers src leases a file for migration without taking its writers' lock
 *   local-write-ignores-record  a library handle's local write does not check for a commit record
 *   install-skips-dir-fsync     dst's install does not fsync the directory it renamed the copy into
 *   commit-skips-fsync          src's commit sets its record xattr without the fsync that makes it durable
 */
export const planted = new Set<string>();
