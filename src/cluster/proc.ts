/** Processes of this host, as the node daemon and the local store see them. */

/** Whether process `pid` exists (one of another user's, which we may not signal, counts). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * The last `n` lines of a brick process's output, each as a person reads it: a JSON log line's error
 * message or message, another line without the CLI's "dhtfs: " prefix.
 */
export function lastLogLines(text: string, n: number): string[] {
  return text
    .trim()
    .split('\n')
    .slice(-n)
    .map((l) => {
      try {
        const j = JSON.parse(l) as { msg?: string; err?: { message?: string } };
        return j.err?.message ?? j.msg ?? l;
      } catch {
        return l.replace(/^dhtfs: /, '');
      }
    });
}
