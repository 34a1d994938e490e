// Is a prefix in a namespace's FIB? Read through /proc/PID/net/{route,ipv6_route} of any process inside that
// namespace: no process to spawn, a few KB to parse for a lab-sized table.
import { readFileSync } from 'node:fs';
import ipaddr from 'ipaddr.js';

interface Key {
  family: 'ipv4' | 'ipv6';
  /** /proc/net/route: destination and mask as the kernel prints them (little-endian hex). */
  dest: string;
  mask: string;
}

function keyOf(cidr: string): Key {
  const [addr, len] = ipaddr.parseCIDR(cidr);
  const bytes = addr.toByteArray();
  const hex = (b: number[]): string => b.map((x) => x.toString(16).padStart(2, '0')).join('').toUpperCase();
  if (addr.kind() === 'ipv4') {
    const mask = [0, 1, 2, 3].map((i) => (0xff << (8 - Math.max(0, Math.min(8, len - i * 8)))) & 0xff);
    return { family: 'ipv4', dest: hex([...bytes].reverse()), mask: hex(mask.reverse()) };
  }
  return { family: 'ipv6', dest: hex(bytes).toLowerCase(), mask: len.toString(16).padStart(2, '0') };
}

/** True when every one of `cidrs` has a route in the namespace of `pid`. */
export function hasRoutes(pid: number, cidrs: readonly string[]): boolean {
  const keys = cidrs.map(keyOf);
  let v4: string[] | undefined;
  let v6: string[] | undefined;
  for (const k of keys) {
    if (k.family === 'ipv4') {
      v4 ??= readFileSync(`/proc/${pid}/net/route`, 'utf8').split('\n');
      if (!v4.some((line) => {
        const f = line.split('\t');
        return f[1] === k.dest && f[7] === k.mask;
      })) return false;
    } else {
      v6 ??= readFileSync(`/proc/${pid}/net/ipv6_route`, 'utf8').split('\n');
      if (!v6.some((line) => line.startsWith(`${k.dest} ${k.mask} `))) return false;
    }
  }
  return true;
}

/** True when none of `cidrs` has a route in the namespace of `pid`. */
export function hasNoRoutes(pid: number, cidrs: readonly string[]): boolean {
  return cidrs.every((c) => !hasRoutes(pid, [c]));
}
