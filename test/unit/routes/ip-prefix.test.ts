import { expect } from 'chai';
import fc from 'fast-check';
import ipaddr from 'ipaddr.js';
import {
  canonicalAddressText,
  canonicalNextHops,
  canonicalPrefixText,
  compareIpPrefixes,
  compareSortKeys,
  ipSortKey,
  nthAddressOf,
  parseIpAddress,
  parseIpCidr,
  parseIpPrefix,
  prefixContains,
  prefixContainsAddress,
  prefixesOverlap,
  prefixHalves,
  truncatedPrefixText,
  truncatePrefix,
} from '../../../src/routes/ip-prefix.js';

/** ipaddr.js is the reference: the route code's own parser must agree with it on every valid input. */
function referenceCanonical(address: ipaddr.IPv4 | ipaddr.IPv6, length: number): string {
  const bytes = address.toByteArray();
  for (let i = 0; i < bytes.length; i++) {
    const keep = Math.max(0, Math.min(8, length - i * 8));
    bytes[i] = (bytes[i] ?? 0) & ((0xff << (8 - keep)) & 0xff);
  }
  return `${ipaddr.fromByteArray(bytes).toString()}/${length}`;
}

const v4Bytes = fc.uint8Array({ minLength: 4, maxLength: 4 });
const v6Bytes = fc.uint8Array({ minLength: 16, maxLength: 16 });
// Sparse IPv6 addresses (many zero words) exercise "::" placement, which dense random bytes never reach.
const sparseV6Bytes = fc
  .array(fc.constantFrom(0, 0, 0, 1, 0xff, 0xab), { minLength: 16, maxLength: 16 })
  .map((a) => Uint8Array.from(a));

const p = (text: string) => parseIpPrefix(text)!;

describe('routes/ip-prefix', () => {
  it('canonicalizes IPv4 prefixes exactly like ipaddr.js', () => {
    fc.assert(
      fc.property(v4Bytes, fc.integer({ min: 0, max: 32 }), (bytes, length) => {
        const address = ipaddr.fromByteArray([...bytes]);
        const text = `${address.toString()}/${length}`;
        expect(parseIpPrefix(text)?.text).to.equal(referenceCanonical(address, length));
      }),
    );
  });

  it('canonicalizes IPv6 prefixes written in any form exactly like ipaddr.js', () => {
    fc.assert(
      fc.property(fc.oneof(v6Bytes, sparseV6Bytes), fc.integer({ min: 0, max: 128 }), fc.boolean(), (bytes, length, upper) => {
        const address = ipaddr.fromByteArray([...bytes]) as ipaddr.IPv6;
        const expected = referenceCanonical(address, length);
        for (const form of [address.toString(), address.toNormalizedString(), address.parts.map((w) => w.toString(16).padStart(4, '0')).join(':')]) {
          const text = `${upper ? form.toUpperCase() : form}/${length}`;
          expect(parseIpPrefix(text)?.text, text).to.equal(expected);
        }
      }),
    );
  });

  it('formats addresses like ipaddr.js (RFC 5952)', () => {
    fc.assert(
      fc.property(fc.oneof(v4Bytes, v6Bytes, sparseV6Bytes), (bytes) => {
        const address = ipaddr.fromByteArray([...bytes]);
        expect(parseIpAddress(address.toString())?.text).to.equal(address.toString());
      }),
    );
    expect(parseIpAddress('2001:db8:0:0:1:0:0:1')?.text).to.equal('2001:db8::1:0:0:1');
    expect(parseIpAddress('2001:0db8::0001')?.text).to.equal('2001:db8::1');
    expect(parseIpAddress('::ffff:1.2.3.4')?.text).to.equal('::ffff:102:304');
  });

  it('reads the kernel spellings: host routes without length and "default"', () => {
    expect(parseIpPrefix('10.1.4.5')?.text).to.equal('10.1.4.5/32');
    expect(parseIpPrefix('fd00::5')?.text).to.equal('fd00::5/128');
    expect(parseIpPrefix('default')?.text).to.equal('0.0.0.0/0');
    expect(parseIpPrefix('default', 'ipv6')?.text).to.equal('::/0');
    expect(parseIpPrefix('10.1.2.3/16')?.text).to.equal('10.1.0.0/16');
  });

  it('rejects what is not an address or prefix', () => {
    const bad = [
      '', '10.1.2', '10.1.2.3.4', '10.1.2.256', '010.1.2.3', '10.1.2.3/33', '10.1.2.3/', '10.1.2.3/08', '10.1.2.3/-1',
      'fd00::/129', 'fd00:::1', ':1:2:3:4:5:6:7', '1:2:3:4:5:6:7:8:9', '1::2::3', 'fe80::1%eth0', 'g::1', '12345::',
      '1.2.3.4::', ' 10.1.2.0/24', 'fd00::1.2.3', '1:2:3:4:5:6:7::8',
    ];
    for (const text of bad) expect(parseIpPrefix(text), text).to.equal(undefined);
    expect(parseIpAddress('10.0.0.1/32')).to.equal(undefined);
  });

  it('tests containment bit by bit', () => {
    expect(prefixContains(p('10.244.0.0/16'), p('10.244.3.0/24'))).to.equal(true);
    expect(prefixContains(p('10.244.3.0/24'), p('10.244.0.0/16'))).to.equal(false);
    expect(prefixContains(p('10.244.2.0/23'), p('10.244.3.128/25'))).to.equal(true);
    expect(prefixContains(p('10.244.2.0/24'), p('10.244.3.0/24'))).to.equal(false);
    expect(prefixContains(p('0.0.0.0/0'), p('::/0'))).to.equal(false);
    expect(prefixContainsAddress(p('fd00:1::/64'), parseIpAddress('fd00:1::ff')!)).to.equal(true);
    expect(prefixContainsAddress(p('fd00:1::/64'), parseIpAddress('fd00:2::ff')!)).to.equal(false);
    fc.assert(
      fc.property(v4Bytes, fc.integer({ min: 0, max: 32 }), fc.integer({ min: 0, max: 32 }), (bytes, a, b) => {
        const address = ipaddr.fromByteArray([...bytes]);
        const inner = p(`${address.toString()}/${Math.max(a, b)}`);
        const outer = truncatePrefix(inner, Math.min(a, b));
        expect(prefixContains(outer, inner)).to.equal(true);
        expect(address.match(ipaddr.parseCIDR(outer.text))).to.equal(true);
      }),
    );
  });

  it('names a truncated prefix as truncatePrefix does, in both families', () => {
    expect(truncatedPrefixText(p('255.255.255.255/32'), 24)).to.equal('255.255.255.0/24');
    expect(truncatedPrefixText(p('10.244.3.77/32'), 0)).to.equal('0.0.0.0/0');
    expect(truncatedPrefixText(p('fd00:10:244:4::9/128'), 64)).to.equal('fd00:10:244:4::/64');
    fc.assert(
      fc.property(v4Bytes, fc.integer({ min: 0, max: 32 }), fc.integer({ min: 0, max: 32 }), (bytes, a, b) => {
        const inner = p(`${ipaddr.fromByteArray([...bytes]).toString()}/${Math.max(a, b)}`);
        expect(truncatedPrefixText(inner, Math.min(a, b))).to.equal(truncatePrefix(inner, Math.min(a, b)).text);
      }),
    );
  });

  it('parses CIDRs of either family (length required, host bits cleared) and refuses the looser forms ipaddr.js takes', () => {
    expect(parseIpCidr('fd00:0::5/64')?.text).to.equal('fd00::/64');
    expect(parseIpCidr('10.1.2.3/16')?.text).to.equal('10.1.0.0/16');
    expect(parseIpCidr('0.0.0.0/0')?.text).to.equal('0.0.0.0/0');
    // IPv4-mapped IPv6 is IPv6 text: an IPv6 prefix, as ipaddr.js reads it too.
    expect(parseIpCidr('::ffff:10.0.0.0/104')?.text).to.equal('::ffff:a00:0/104');
    const junk = ['10.0.0.0', '10.0.0.0/33', 'fd00::/129', '', 'x/8', '10.0.0.0/8/8', 'default', '10.1/16', '010.0.0.0/8', '0x0a.0.0.0/8', '10.0.0.0/08', ' 10.0.0.0/8', 'fd00::%eth0/64'];
    for (const text of junk) expect(parseIpCidr(text), text).to.equal(undefined);
    // ipaddr.js accepts some of these (two-part and octal IPv4): the agent's parser does not.
    expect(ipaddr.isValidCIDR('010.0.0.0/8')).to.equal(true);
  });

  it('the n-th address of a prefix stays inside it, and there is none past its end', () => {
    fc.assert(
      fc.property(v4Bytes, fc.integer({ min: 0, max: 32 }), fc.integer({ min: 0, max: 2 ** 32 }), (bytes, length, n) => {
        const prefix = p(`${ipaddr.fromByteArray([...bytes]).toString()}/${length}`);
        const address = nthAddressOf(prefix, n);
        if (n >= 2 ** (32 - length)) {
          expect(address).to.equal(undefined);
          return;
        }
        expect(prefixContainsAddress(prefix, address!)).to.equal(true);
        const numeric = (b: Uint8Array): number => b.reduce((v, x) => v * 256 + x, 0);
        expect(numeric(address!.bytes) - numeric(prefix.bytes)).to.equal(n);
      }),
    );
    expect(nthAddressOf(p('fd00:10:1::/64'), 11)?.text).to.equal('fd00:10:1::b');
    expect(nthAddressOf(p('fd00:10:1::/64'), 2 ** 40 + 256)?.text).to.equal('fd00:10:1::100:0:100');
    expect(nthAddressOf(p('10.255.1.0/31'), 1)?.text).to.equal('10.255.1.1');
    expect(nthAddressOf(p('10.255.1.0/31'), 2)).to.equal(undefined);
    expect(nthAddressOf(p('10.255.1.0/31'), -1)).to.equal(undefined);
  });

  it('splits a prefix into the two halves that make it up', () => {
    expect(prefixHalves(p('0.0.0.0/0')).map((h) => h.text)).to.deep.equal(['0.0.0.0/1', '128.0.0.0/1']);
    expect(prefixHalves(p('::/0')).map((h) => h.text)).to.deep.equal(['::/1', '8000::/1']);
    expect(prefixHalves(p('10.1.0.0/23')).map((h) => h.text)).to.deep.equal(['10.1.0.0/24', '10.1.1.0/24']);
    fc.assert(
      fc.property(v6Bytes, fc.integer({ min: 0, max: 127 }), (bytes, length) => {
        const whole = p(`${ipaddr.fromByteArray([...bytes]).toString()}/${length}`);
        const [low, high] = prefixHalves(whole);
        expect(prefixContains(whole, low) && prefixContains(whole, high)).to.equal(true);
        expect(prefixesOverlap(low, high)).to.equal(false);
        expect(low.length).to.equal(length + 1);
        expect(parseIpPrefix(high.text)?.text).to.equal(high.text);
      }),
    );
  });

  it('sorts next hops numerically and drops duplicates', () => {
    expect(canonicalNextHops(['10.0.0.10', '10.0.0.9', '10.0.0.10', 'fd00::1', '10.0.0.9'])).to.deep.equal(['10.0.0.9', '10.0.0.10', 'fd00::1']);
    expect(canonicalNextHops(['fd00:0::2', 'FD00::1'])).to.deep.equal(['fd00::1', 'fd00::2']);
    expect(canonicalNextHops(['10.0.0.1', 'nope'])).to.equal(undefined);
  });

  describe('fast paths (planner, kernel reader)', () => {
    const anyPrefixText = fc.oneof(
      fc.tuple(v4Bytes, fc.integer({ min: 0, max: 32 })).map(([b, l]) => `${ipaddr.fromByteArray([...b]).toString()}/${l}`),
      fc.tuple(fc.oneof(v6Bytes, sparseV6Bytes), fc.integer({ min: 0, max: 128 })).map(([b, l]) => `${(ipaddr.fromByteArray([...b]) as ipaddr.IPv6).toNormalizedString()}/${l}`),
      v4Bytes.map((b) => ipaddr.fromByteArray([...b]).toString()),
      fc.string({ maxLength: 20 }),
      fc.constantFrom('default', '10.0.0.0/033', '10.0.0.0/', '10.00.0.0/8', '1.2.3.4/32 '),
    );

    it('agree with the full parser, and hand back the same string when it is canonical', () => {
      fc.assert(
        fc.property(anyPrefixText, (text) => {
          const full = parseIpPrefix(text)?.text;
          const fast = canonicalPrefixText(text);
          expect(fast, text).to.equal(full);
          if (full === text) expect(fast).to.equal(text);
          expect(canonicalAddressText(text), text).to.equal(parseIpAddress(text)?.text);
        }),
      );
    });

    it('sort keys order prefixes like compareIpPrefixes', () => {
      fc.assert(
        fc.property(anyPrefixText, anyPrefixText, (x, y) => {
          const a = parseIpPrefix(x);
          const b = parseIpPrefix(y);
          if (a === undefined || b === undefined) return;
          expect(Math.sign(compareSortKeys(ipSortKey(a.text), ipSortKey(b.text))), `${a.text} ${b.text}`).to.equal(Math.sign(compareIpPrefixes(a, b)));
        }),
      );
    });
  });
});
