// BGP communities as operators write them and as they travel: standard (RFC 1997) "65000:100" or a well-known
// name, large (RFC 8092) "65000:1:2". Pure parsing and formatting; the canonical text ("hi:lo" numbers for standard
// communities, well-known names resolved) is what podroute compares and what gobgpd's answers are turned back into.

/**
 * The well-known communities that GoBGP and FRR both name (same spelling in both), as operators use them on
 * route-maps. Others (graceful-shutdown vs GoBGP's planned-shut, local-AS vs no-export-subconfed) are written as numbers.
 */
export const WELL_KNOWN_COMMUNITIES: Readonly<Record<string, number>> = {
  'no-export': 0xffffff01, // RFC 1997
  'no-advertise': 0xffffff02, // RFC 1997
  'no-peer': 0xffffff04, // RFC 3765
  blackhole: 0xffff029a, // RFC 7999 (65535:666)
};

export interface LargeCommunity {
  globalAdmin: number;
  localData1: number;
  localData2: number;
}

/** A community in the form it was recognised: standard as one uint32, large as three. */
export type ParsedCommunity = { kind: 'standard'; value: number } | { kind: 'large'; value: LargeCommunity };

const UINT16_MAX = 0xffff;
const UINT32_MAX = 0xffffffff;

function uintPart(text: string, max: number): number | undefined {
  if (!/^\d{1,10}$/.test(text)) return undefined;
  const n = Number(text);
  return n <= max ? n : undefined;
}

/**
 * Parses one community: "a:b" (each 0..65535), "a:b:c" (each 0..4294967295) or a well-known name. The answer is
 * a problem sentence (without the key: the caller names it) when the text is none of them.
 */
export function parseCommunity(text: string): ParsedCommunity | { problem: string } {
  const t = text.trim();
  const named = WELL_KNOWN_COMMUNITIES[t.toLowerCase()];
  if (named !== undefined) return { kind: 'standard', value: named };
  const parts = t.split(':');
  if (parts.length === 2) {
    const [hi, lo] = parts.map((p) => uintPart(p, UINT16_MAX));
    if (hi === undefined || lo === undefined) return { problem: `${JSON.stringify(text)} is not a community: "ASN:value" takes two numbers 0..65535` };
    return { kind: 'standard', value: hi * 0x10000 + lo };
  }
  if (parts.length === 3) {
    const [g, l1, l2] = parts.map((p) => uintPart(p, UINT32_MAX));
    if (g === undefined || l1 === undefined || l2 === undefined) {
      return { problem: `${JSON.stringify(text)} is not a large community: "ASN:value:value" takes three numbers 0..4294967295` };
    }
    return { kind: 'large', value: { globalAdmin: g, localData1: l1, localData2: l2 } };
  }
  const names = Object.keys(WELL_KNOWN_COMMUNITIES).join(', ');
  return { problem: `${JSON.stringify(text)} is not a community: write "ASN:value", "ASN:value:value" (large) or one of ${names}` };
}

/** Canonical text of a standard community: "hi:lo". */
export function formatCommunity(value: number): string {
  return `${Math.floor(value / 0x10000)}:${value % 0x10000}`;
}

export function formatLargeCommunity(c: LargeCommunity): string {
  return `${c.globalAdmin}:${c.localData1}:${c.localData2}`;
}

/** The uint32 of a canonical (or any valid) standard community text; throws on anything else. */
export function communityValue(text: string): number {
  const parsed = parseCommunity(text);
  if (!('kind' in parsed) || parsed.kind !== 'standard') throw new Error(`not a standard community: ${JSON.stringify(text)}`);
  return parsed.value;
}

export function largeCommunityValue(text: string): LargeCommunity {
  const parsed = parseCommunity(text);
  if (!('kind' in parsed) || parsed.kind !== 'large') throw new Error(`not a large community: ${JSON.stringify(text)}`);
  return parsed.value;
}

/** Standard and large communities of one list, each canonical, sorted by value and without duplicates. */
export interface CommunitySet {
  communities: string[];
  largeCommunities: string[];
}

/**
 * Splits a mixed list (as configured or annotated) into canonical standard and large communities. Bad entries are
 * returned as problems, each naming its index; the good ones are still sorted out.
 */
export function parseCommunityList(texts: readonly string[]): CommunitySet & { problems: { index: number; problem: string }[] } {
  const standard = new Set<number>();
  const large = new Map<string, LargeCommunity>();
  const problems: { index: number; problem: string }[] = [];
  texts.forEach((text, index) => {
    const parsed = parseCommunity(text);
    if ('problem' in parsed) problems.push({ index, problem: parsed.problem });
    else if (parsed.kind === 'standard') standard.add(parsed.value);
    else large.set(formatLargeCommunity(parsed.value), parsed.value);
  });
  return {
    communities: [...standard].sort((a, b) => a - b).map(formatCommunity),
    largeCommunities: [...large.values()].sort(compareLarge).map(formatLargeCommunity),
    problems,
  };
}

function compareLarge(a: LargeCommunity, b: LargeCommunity): number {
  return a.globalAdmin - b.globalAdmin || a.localData1 - b.localData1 || a.localData2 - b.localData2;
}
