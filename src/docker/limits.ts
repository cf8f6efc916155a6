import type Docker from 'dockerode';
import { errors } from '../model/errors.js';

/**
 * Limits of the containers a build runs (builder and in-image test). A repository's build.sh
 * runs whatever its author wrote: without limits one fork bomb or one runaway allocation takes
 * the engine's machine, and with it the server and every other build. The defaults are far
 * above what a normal build needs; 0 means no limit.
 */
export interface BuildLimits {
  /** Bytes of memory (swap included: no swap beyond it); 0 = no limit. */
  memoryBytes: number;
  /** Processes and threads at once; 0 = no limit. */
  pids: number;
}

const GiB = 1024 ** 3;
export const DEFAULT_BUILD_LIMITS: BuildLimits = { memoryBytes: 4 * GiB, pids: 4096 };

/** The engine refuses less than this (6 MB); smaller values get our error instead of its. */
const MIN_MEMORY = 6 * 1024 * 1024;
const UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, kb: 1024, kib: 1024, m: 1024 ** 2, mb: 1024 ** 2, mib: 1024 ** 2, g: GiB, gb: GiB, gib: GiB, t: 1024 ** 4, tb: 1024 ** 4, tib: 1024 ** 4 };

/** A memory size as docker's --memory takes it: bytes, or a number with k, m, g or t (binary units: 4g = 4 GiB). */
export function parseMemory(value: string, setting: string): number {
  const match = /^(\d{1,15})\s*([a-z]{0,3})$/i.exec(value.trim());
  const unit = match ? UNITS[match[2].toLowerCase()] : undefined;
  if (!match || unit === undefined) throw errors.usage(`${setting} "${value}" is not a memory size; give bytes or a number with k, m or g, e.g. 4g or 512m (0 for no limit)`);
  const bytes = Number(match[1]) * unit;
  if (bytes !== 0 && bytes < MIN_MEMORY) throw errors.usage(`${setting} "${value}" is below the engine's minimum of 6 MiB; give at least 6m, or 0 for no limit`);
  return bytes;
}

export function parsePids(value: string, setting: string): number {
  if (!/^\d{1,9}$/.test(value.trim())) throw errors.usage(`${setting} "${value}" is not a whole number of processes (0 for no limit)`);
  return Number(value.trim());
}

/** Reads BUILDBOT_BUILD_MEMORY and BUILDBOT_BUILD_PIDS (or the flags standing in for them) over the defaults. */
export function buildLimitsFrom(memory: string | undefined, pids: string | undefined, names = { memory: 'BUILDBOT_BUILD_MEMORY', pids: 'BUILDBOT_BUILD_PIDS' }): BuildLimits {
  return {
    memoryBytes: memory === undefined || memory === '' ? DEFAULT_BUILD_LIMITS.memoryBytes : parseMemory(memory, names.memory),
    pids: pids === undefined || pids === '' ? DEFAULT_BUILD_LIMITS.pids : parsePids(pids, names.pids),
  };
}

/**
 * The HostConfig part of a build container: the limits, and no NET_RAW (raw sockets let a
 * build forge packets and sniff on the engine's bridge; nothing a build needs, ping aside).
 */
export function limitsHostConfig(limits: BuildLimits): Docker.HostConfig {
  return {
    CapDrop: ['NET_RAW'],
    ...(limits.memoryBytes ? { Memory: limits.memoryBytes, MemorySwap: limits.memoryBytes } : {}),
    ...(limits.pids ? { PidsLimit: limits.pids } : {}),
  };
}

/** For messages: 4294967296 -> "4 GiB". */
export function describeMemory(bytes: number): string {
  if (!bytes) return 'no limit';
  for (const [unit, size] of [['GiB', GiB], ['MiB', 1024 ** 2], ['KiB', 1024]] as const) if (bytes % size === 0) return `${bytes / size} ${unit}`;
  return `${bytes} bytes`;
}
