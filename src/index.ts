/** dhtfs: the library API. */
export { Volume, FileHandle, parseFlags, type OpenFlags, type ConnectOptions } from './api/volume.js';
export { Stats, Dirent } from './api/stats.js';
export { FsError } from './common/errors.js';
export type { VolumeSpec, BrickSpec, VolumeOptions } from './dht/spec.js';
export { validateSpec } from './dht/spec.js';
export { dhtHash, dmHashBytes } from './dht/hash.js';
export { S_IFBLK, S_IFCHR, S_IFIFO, S_IFSOCK, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE, FALLOC_FL_COLLAPSE_RANGE, FALLOC_FL_INSERT_RANGE } from './storage/storage.js';
