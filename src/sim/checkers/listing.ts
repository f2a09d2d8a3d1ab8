/**
 * S4 (always visible) for listings of /d: a client's whole listing holds every fixed file exactly once
 * and no name nobody made; its view of the clients' own names is checked by own-names.ts. At the end,
 * the listing is the fixed files and the own names that are there.
 */
export function checkListing(k: number, list: string[], fixedNames: string[], isOwn: (n: string) => boolean, violations: string[]): void {
  const fixed = list.filter((n) => !isOwn(n));
  if (JSON.stringify(fixed) !== JSON.stringify([...fixedNames].sort())) violations.push(`S4 client ${k} listed ${JSON.stringify(list)}`);
  const unknown = fixed.filter((n) => !fixedNames.includes(n));
  if (unknown.length) violations.push(`S4 client ${k} listed unknown names ${JSON.stringify(unknown)}`);
}

export function checkFinalListing(list: string[], want: string[], violations: string[]): void {
  if (JSON.stringify(list) !== JSON.stringify(want)) violations.push(`S4 final listing is ${JSON.stringify(list)}, expected ${JSON.stringify(want)}`);
}
