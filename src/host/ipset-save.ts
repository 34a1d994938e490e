// `ipset save` (and `ipset list -o save`) output, read in one place for every owner of sets: the policy applier and
// the masquerade reconciler each turn these into their own observed state.
import type { IpFamily } from '../routes/ip-prefix.js';

export interface SavedSet {
  name: string;
  type: string;
  /** ipset's family word. */
  family: 'inet' | 'inet6';
  /** Entries as printed, in order; a `nomatch` entry keeps its flag after a space. */
  entries: string[];
}

/** ipset's family word for an IP family, as `create ... family` writes it and `ipset save` prints it. */
export function ipsetFamily(family: IpFamily): 'inet' | 'inet6' {
  return family === 'ipv4' ? 'inet' : 'inet6';
}

/** The `ipset restore` input that prints the named sets as `ipset save` would, in that order (a missing one fails it). */
export function listSetsInput(setNames: readonly string[]): string {
  return setNames.map((name) => `list ${name} -o save\n`).join('');
}

/** The sets of `text` whose names `ours` accepts (all by default), with their entries. */
export function parseIpsetSave(text: string, ours: (name: string) => boolean = () => true): Map<string, SavedSet> {
  const sets = new Map<string, SavedSet>();
  for (const line of text.split('\n')) {
    // The name is tested before the line is split into words: the output also holds other owners' sets, some of
    // them with tens of thousands of members.
    const nameStart = line.indexOf(' ') + 1;
    const nameEnd = line.indexOf(' ', nameStart);
    const lineName = nameStart === 0 ? '' : line.slice(nameStart, nameEnd === -1 ? undefined : nameEnd);
    if (line.startsWith('add ') ? !sets.has(lineName) : !(line.startsWith('create ') && ours(lineName))) continue;
    const words = line.trim().split(/\s+/);
    const name = words[1];
    if (name === undefined) continue;
    if (words[0] === 'create') {
      const familyAt = words.indexOf('family');
      sets.set(name, { name, type: words[2] ?? '', family: familyAt >= 0 && words[familyAt + 1] === 'inet6' ? 'inet6' : 'inet', entries: [] });
    } else if (words[0] === 'add' && words[2] !== undefined) {
      sets.get(name)?.entries.push(words[3] === 'nomatch' ? `${words[2]} nomatch` : words[2]);
    }
  }
  return sets;
}
