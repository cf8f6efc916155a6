import type Docker from 'dockerode';
import type { Removals } from '../docker/removals.js';
import type { Config } from '../pipeline/config.js';
import type { Placement, WaitInfo } from './routing.js';

/** One engine as a build uses it: its client, the config its builds run with, its removals. */
export interface BuildEngine {
  readonly name: string;
  readonly docker: Docker;
  /** The server's config with this engine's target and label (errors name the engine). */
  readonly config: Config;
  readonly removals: Removals;
}

/** What the API and the monitor show of an engine: the URL has no credentials. */
export interface EngineView {
  name: string;
  url: string;
  state: 'up' | 'down';
  draining: boolean;
  slots: number;
  running: number;
}

export interface EngineGrant {
  engine: BuildEngine;
  placement: Placement;
  release(): void;
}

/**
 * The engines the build service places builds on (src/engines/pool.ts is the implementation,
 * named only by the composition root). One engine: today's single-engine server.
 */
export interface Engines {
  /** A slot on the engine the routing rule picks for the service (src/engines/routing.ts). */
  acquire(serviceId: string, signal: AbortSignal, tell: (place: number, info: WaitInfo) => void): Promise<EngineGrant>;
  list(): EngineView[];
  /** Drain: no new build goes there, its running builds finish; kept across restarts. Undefined: no such engine. */
  drain(name: string): Promise<EngineView | undefined>;
  resume(name: string): Promise<EngineView | undefined>;
  /** Builds placed so far, by engine and placement (metrics). */
  placed(): Array<{ engine: string; placement: Placement; count: number }>;
}
