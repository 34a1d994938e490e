// What the figures were measured on: they only compare within one run, but a reader needs the machine.
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { execa } from 'execa';

export interface MachineInfo {
  date: string;
  cpu: string;
  cores: number;
  memoryGiB: number;
  kernel: string;
  os: string;
  node: string;
  versions: Record<string, string>;
  gitCommit: string;
  loadAtStart: number[];
}

async function firstLine(command: string, args: string[]): Promise<string> {
  const r = await execa(command, args, { reject: false, timeout: 10_000, all: true });
  return (r.all ?? '').split('\n').find((l) => l.trim() !== '')?.trim() ?? 'unknown';
}

export async function machineInfo(): Promise<MachineInfo> {
  let osName = 'unknown';
  try {
    osName = /^PRETTY_NAME="?([^"\n]*)"?/m.exec(readFileSync('/etc/os-release', 'utf8'))?.[1] ?? osName;
  } catch {
    // not Linux-like: keep unknown
  }
  return {
    date: new Date().toISOString(),
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cores: os.cpus().length,
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    kernel: os.release(),
    os: osName,
    node: process.version,
    versions: {
      gobgpd: await firstLine('gobgpd', ['--version']),
      frr: await firstLine('/usr/lib/frr/zebra', ['--version']),
      bird: await firstLine('bird', ['--version']),
      iperf3: await firstLine('iperf3', ['--version']),
      iproute2: await firstLine('ip', ['-V']),
    },
    gitCommit: await firstLine('git', ['rev-parse', '--short', 'HEAD']),
    loadAtStart: os.loadavg(),
  };
}
